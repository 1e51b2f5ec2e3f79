"""Dependencies of the routes, as ``Annotated`` aliases.

They do no I/O, so they are ``async``: FastAPI would run a plain ``def`` on a worker
thread, a hop per dependency on every request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from api.state import ApiState


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


async def require_api_key(
    state: State, authorization: Annotated[str | None, Header()] = None
) -> None:
    """With ``ORCHESTRATOR_API_KEYS`` set, every call needs ``Authorization: Bearer <key>``."""
    keys = state.settings.api_keys
    if not keys:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    given = presented.strip().encode()
    # Compare with every key, in constant time each, so timing tells nothing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if scheme.lower() != "bearer" or not given or not matched:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_api_key)
