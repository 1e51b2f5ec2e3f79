"""``/healthz`` (the process lives) and ``/readyz`` (Redis and the broker answer). Open to all."""

from __future__ import annotations

import dataclasses

import redis
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from kombu import Connection

from api.deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers. On the event loop itself, so it answers even while every
    thread waits on a slow Redis or broker."""
    return {"status": "ok"}


def _redis_status(state: State) -> str:
    try:
        state.store.redis.ping()
    except redis.RedisError as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


def _broker_status(state: State) -> str:
    timeout = state.settings.publish_timeout_seconds
    try:
        with Connection(state.settings.broker_url, connect_timeout=timeout, heartbeat=0) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # any failure to connect means not ready, whatever kombu raised
        return f"down: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", responses={503: {"description": "Redis or the broker is down"}})
async def readyz(state: State) -> JSONResponse:
    redis_status = await run_in_threadpool(_redis_status, state)
    broker_status = await run_in_threadpool(_broker_status, state)
    failures = [dataclasses.asdict(f) for f in state.plugins.report.failed]
    body = {"redis": redis_status, "broker": broker_status, "plugin_failures": failures}
    down = [name for name, s in (("redis", redis_status), ("broker", broker_status)) if s != "ok"]
    if down:
        return JSONResponse({"detail": f"not ready: {' and '.join(down)} down", **body}, 503)
    return JSONResponse(body)
