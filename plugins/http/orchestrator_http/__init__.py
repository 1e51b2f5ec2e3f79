"""The ``http.request`` job type for the orchestrator: one HTTP request per job.

Registered through the ``http`` entry point (``orchestrator_http.plugin``). The
payload model and the retryable error classes are re-exported for callers that
build payloads or inspect failures; importing them registers nothing.
"""

from orchestrator_http.errors import RequestError, ServerError, TryLaterError
from orchestrator_http.payload import RequestPayload

__all__ = ["RequestError", "RequestPayload", "ServerError", "TryLaterError"]
