"""``/metrics``: the Prometheus exposition of the deployment's jobs and workers and of
this process's requests (see ``api/metrics.py`` for what comes from where)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import Authorized, State

router = APIRouter(tags=["metrics"], dependencies=[Authorized])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
            "description": "Prometheus text format; orchestrator_store_up is 0 when Redis "
            "could not be read, and the job figures are then left out",
        },
        401: {"description": "missing or wrong API key"},
    },
)
def metrics(state: State) -> Response:
    # A plain def: FastAPI runs it on a worker thread, so the Redis reads of the
    # scrape never block the event loop.
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
