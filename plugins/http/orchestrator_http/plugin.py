"""The http plugin: registers the ``http.request`` job type."""

from __future__ import annotations

from orchestrator_core import JobType, hookimpl
from orchestrator_http.payload import RequestPayload
from orchestrator_http.request import http_request


@hookimpl
def register_job_types() -> list[JobType]:
    """Register ``http.request``."""
    return [
        JobType(
            name="http.request",
            payload=RequestPayload,
            execute=http_request,
            max_attempts=3,
            retry_backoff=1.0,
            retry_backoff_max=30.0,
            # The payload bounds each request with its own timeout.
            timeout=None,
        )
    ]
