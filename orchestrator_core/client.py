"""A small typed client of the REST API (DESIGN section 5), as the command line uses it.

Documents come back as the plain JSON objects the API sent, so a caller that prints
them shows exactly what the API said. Every failure, an error status or an API that
cannot be reached, is an :class:`ApiError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from orchestrator_core.exceptions import ConfigurationError, OrchestratorError
from orchestrator_core.settings import Settings
from orchestrator_core.states import TERMINAL_STATES

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to the API."""
READ_TIMEOUT = 30.0
"""Seconds to wait for each reply (and to send each request)."""

Document = dict[str, Any]


class ApiError(OrchestratorError):
    """Raised when the API answers with an error status, or cannot be reached at all.

    :ivar status: the HTTP status, or ``None`` when no answer came (refused, timed out).
    :ivar detail: the ``detail`` of the error body (a string, or a list of validation
        errors for a 422), the start of the body when it was not the API's JSON, or
        ``None`` when no answer came.
    """

    def __init__(self, message: str, *, status: int | None, detail: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class WaitTimeoutError(OrchestratorError, TimeoutError):
    """Raised when :meth:`Client.wait` gives up before the job reached a terminal state.

    :ivar job_id: the job waited for.
    :ivar job: its document as last read.
    """

    def __init__(self, job: Document, timeout: float) -> None:
        super().__init__(
            f"job {job.get('id')} is still {job.get('state')} after {timeout:g} s; "
            "it keeps running, stopping the wait does not cancel it"
        )
        self.job_id = str(job.get("id"))
        self.job = job


TRANSIENT_STATUSES = frozenset({None, 502, 503, 504})
"""Poll failures that a moment's wait may mend: no answer, or a gateway or service away."""


class Client:
    """The REST API at ``base_url``, with ``api_key`` sent as a bearer token when given.

    Use it as a context manager (or call :meth:`close`) so its connections are closed.

    :raises ConfigurationError: when ``base_url`` is not an http(s) URL.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            scheme = httpx.URL(self.base_url).scheme
        except httpx.InvalidURL as exc:
            scheme = f"invalid ({exc})"
        if scheme not in ("http", "https"):
            raise ConfigurationError(
                "the API URL (ORCHESTRATOR_API_URL) must start with http:// or https://, "
                f"not {base_url!r}"
            )
        self._sends_key = api_key is not None
        headers = {"Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        """A client of ``settings.api_url`` that sends ``settings.api_key`` if it is set."""
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return cls(settings.api_url, api_key=key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def submit(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> Document:
        """Submit a job and return its document (the original job's, for a repeated key).

        :raises ApiError: 422 for an unknown type or an invalid payload, among others.
        """
        body: dict[str, Any] = {"type": type, "payload": payload}
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return self._document(self._send("POST", "/jobs", {200, 201}, json=body, headers=headers))

    def get(self, job_id: str) -> Document:
        """The document of job ``job_id``.

        :raises ApiError: 404 when there is no such job.
        """
        return self._document(self._send("GET", _job_path(job_id), {200}))

    def cancel(self, job_id: str) -> tuple[int, Document]:
        """Ask for job ``job_id`` to be cancelled; return the status and the job's document.

        The status is 202 when the job is (or will soon be) CANCELLED, and 409 when it had
        already COMPLETED or FAILED, which leaves it unchanged.

        :raises ApiError: 404 when there is no such job.
        """
        response = self._send("DELETE", _job_path(job_id), {202, 409})
        return response.status_code, self._document(response)

    def jobs(
        self,
        *,
        state: str | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Document:
        """One page of jobs, newest first: ``{"items": [...], "next_cursor": str | None}``."""
        params: dict[str, str | int] = {"limit": limit}
        for name, value in (("state", state), ("type", type), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        return self._document(self._send("GET", "/jobs", {200}, params=params))

    def wait(
        self,
        job_id: str,
        *,
        on_update: Callable[[Document], None],
        poll_seconds: float = 0.2,
        timeout: float | None = None,
        outage_seconds: float = 60.0,
    ) -> Document:
        """Poll job ``job_id`` until it is COMPLETED, FAILED or CANCELLED; return that document.

        ``on_update`` gets the document first as read, then each time its state, attempt,
        progress or cancel request changed (the final document included). Polling can miss
        a state that lasted shorter than ``poll_seconds``.

        A poll that finds the API unreachable or answering 503 (a restart, Redis away for
        a moment) is tried again with growing pauses, for up to ``outage_seconds``.

        :raises WaitTimeoutError: when ``timeout`` seconds pass first; the job carries on.
        :raises ApiError: when a poll fails for good, or the outage lasts too long; the
            job carries on.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: tuple[object, ...] | None = None
        outage_since: float | None = None
        pause = poll_seconds
        while True:
            try:
                job = self.get(job_id)
            except ApiError as exc:
                if exc.status not in TRANSIENT_STATUSES:
                    raise
                now = time.monotonic()
                outage_since = outage_since or now
                if now - outage_since > outage_seconds or (
                    deadline is not None and now >= deadline
                ):
                    raise
                pause = min(pause * 2, 5.0)
                time.sleep(pause)
                continue
            outage_since, pause = None, poll_seconds
            current = (
                job.get("state"),
                job.get("attempts"),
                job.get("progress"),
                job.get("cancel_requested"),
            )
            if current != seen:
                seen = current
                on_update(job)
            if job.get("state") in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(job, timeout or 0.0)
            time.sleep(poll_seconds)

    def _send(self, method: str, path: str, expected: set[int], **options: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **options)
        except httpx.TimeoutException as exc:
            raise ApiError(
                f"the API at {self.base_url} is unreachable: no answer in time "
                f"({type(exc).__name__}; connect {CONNECT_TIMEOUT:g} s, read {READ_TIMEOUT:g} s)",
                status=None,
            ) from exc
        except httpx.TransportError as exc:
            raise ApiError(
                f"the API at {self.base_url} is unreachable: {_one_line(exc)}", status=None
            ) from exc
        if response.status_code in expected:
            return response
        status = response.status_code
        detail = _error_detail(response)
        message = f"{status} {describe_detail(detail)}"
        if status == 401 and not self._sends_key:
            message += " (no API key was sent; set ORCHESTRATOR_API_KEY)"
        raise ApiError(message, status=status, detail=detail)

    def _document(self, response: httpx.Response) -> Document:
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ApiError(
                f"{response.status_code} the API at {self.base_url} answered with something "
                f"other than a JSON object: {_one_line(response.text)[:200]!r}",
                status=response.status_code,
                detail=response.text[:200],
            )
        return document


def describe_detail(detail: object) -> str:
    """The ``detail`` of an error body on one line: validation errors as ``where: what``."""
    if isinstance(detail, list):
        return "; ".join(_describe_item(item) for item in detail)
    return _one_line(str(detail))


def _describe_item(item: object) -> str:
    if not isinstance(item, dict):
        return _one_line(str(item))
    loc = [str(part) for part in item.get("loc", [])]
    if loc[:1] == ["body"]:
        loc = loc[1:]  # every submission error is in the body; the rest says where
    msg = _one_line(str(item.get("msg", item)))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def _error_detail(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    # Not the API's own error (a proxy's page, say): show its start, not the whole page.
    return _one_line(response.text)[:200] or response.reason_phrase


def _job_path(job_id: str) -> str:
    # Quoted whole, so an id holding "/" or "?" cannot reach another route.
    return f"/jobs/{quote(job_id, safe='')}"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
