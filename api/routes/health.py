"""``/healthz`` (the process lives) and ``/readyz`` (Redis and the broker answer). Open to all."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers. On the event loop itself, so it answers even while every
    thread waits on a slow Redis or broker."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis or the broker is down"}})
async def readyz(state: State) -> JSONResponse:
    """Redis and the broker answer (as of a probe at most ``readiness_cache_seconds``
    old); ``warnings`` says what may lose jobs without making the API unready, such as
    a Redis that evicts keys."""
    found = await state.readiness.check()
    failures = [dataclasses.asdict(f) for f in state.plugins.report.failed]
    body: dict[str, Any] = {
        "redis": found.redis,
        "broker": found.broker,
        "plugin_failures": failures,
    }
    if found.warnings:
        body["warnings"] = list(found.warnings)
    if found.down:
        return JSONResponse({"detail": f"not ready: {' and '.join(found.down)} down", **body}, 503)
    return JSONResponse(body)
