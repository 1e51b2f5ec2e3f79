"""The retryable failures of ``http.request``.

They derive from plain ``Exception``, not from ``PermanentError``, so the worker
retries the attempt with backoff while attempts remain. Failures no retry can mend
(a 4xx, a redirect that is not followed) raise ``orchestrator_core.PermanentError``.
"""

from __future__ import annotations


class StatusError(Exception):
    """A response whose status calls for another attempt.

    :ivar status: the response status.
    :ivar url: the URL requested (without credentials).
    """

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ServerError(StatusError):
    """Raised when the server answers with a 5xx status that ``accept_status`` does not accept."""


class RequestError(Exception):
    """Raised when no usable response arrived: connection refused or reset, a timeout, a
    protocol error, or a body that could not be decoded.

    :ivar url: the URL requested (without credentials).
    :ivar cause: the name of the httpx exception behind it, or ``"Timeout"`` when the
        payload's overall ``timeout`` expired.
    """

    def __init__(self, message: str, *, url: str, cause: str) -> None:
        super().__init__(message)
        self.url = url
        self.cause = cause


class TryLaterError(StatusError):
    """Raised when the server answers 408 or 429, asking the client to come back later."""
