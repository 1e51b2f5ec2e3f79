"""``/auth``: what the presented API key may do, so that a client (the dashboard) offers
only the actions the key is allowed."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Authenticated
from api.schemas import AuthPublic

router = APIRouter(tags=["auth"])


@router.get(
    "/auth",
    response_model=AuthPublic,
    responses={401: {"description": "missing or wrong API key"}},
)
async def auth(caller: Authenticated) -> AuthPublic:
    """The role of the key sent: ``admin`` (from ``ORCHESTRATOR_API_KEYS``) may do
    everything, ``read`` (from ``ORCHESTRATOR_READONLY_API_KEYS``) only read. With no
    keys set every caller is ``admin``."""
    return AuthPublic(role=caller.role)
