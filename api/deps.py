"""Dependencies of the routes, as ``Annotated`` aliases.

They do no I/O, so they are ``async``: FastAPI would run a plain ``def`` on a worker
thread, a hop per dependency on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.openapi.models import HTTPBearer
from fastapi.security.base import SecurityBase

from api.keys import ANONYMOUS, Caller, KeyRing, Role
from api.state import ApiState

READ_METHODS = frozenset({"GET", "HEAD"})
"""What a read-only key may send; every other method writes."""


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


class ApiKeyAuth(SecurityBase):
    """With API keys set, every call needs ``Authorization: Bearer <key>``, and a key from
    ``ORCHESTRATOR_READONLY_API_KEYS`` may only read.

    A security scheme, so that the OpenAPI document declares the bearer key and the
    docs page offers to send it. One dependency reading the header itself: a separate
    ``Header`` parameter and state lookup would cost POST /jobs a resolution each.
    """

    def __init__(self) -> None:
        self.model = HTTPBearer(
            description="An API key from ORCHESTRATOR_API_KEYS, or from "
            "ORCHESTRATOR_READONLY_API_KEYS for reads only; needed once either is set."
        )
        self.scheme_name = "apiKey"

    async def __call__(self, request: Request) -> Caller:
        keys: KeyRing = request.app.state.api.keys
        if keys.open:
            return ANONYMOUS
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        given = presented.strip().encode()
        caller = keys.caller(given) if given else None
        if caller is None or scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="a valid API key is required: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if caller.role is Role.READ and request.method not in READ_METHODS:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this API key may only read: {request.method} {request.url.path} "
                "needs a key from ORCHESTRATOR_API_KEYS",
            )
        return caller


require_api_key = ApiKeyAuth()

Authorized = Depends(require_api_key)
"""For a router's ``dependencies``: the call needs a key (of a role that may make it)."""

Authenticated = Annotated[Caller, Depends(require_api_key)]
"""The caller, for a route that acts on who it is (resolved once with ``Authorized``)."""
