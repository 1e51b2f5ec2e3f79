"""A small typed client of the REST API (DESIGN section 5), as services and the command line
use it.

Documents come back as the plain JSON objects the API sent, so a caller that prints
them shows exactly what the API said. Every failure, an error status or an API that
cannot be reached, is an :class:`ApiError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from orchestrator_core.exceptions import ApiError, ConfigurationError, WaitTimeoutError
from orchestrator_core.settings import Settings
from orchestrator_core.states import TERMINAL_STATES

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to the API."""
READ_TIMEOUT = 30.0
"""Seconds to wait for each reply (and to send each request)."""

Document = dict[str, Any]


TRANSIENT_STATUSES = frozenset({None, 502, 503, 504})
"""Failures that a moment's wait may mend: no answer, or a gateway or service away."""

MAX_PAUSE = 5.0
"""The longest pause between two tries while the API is away."""


@dataclass
class ServerEvent:
    """One message of a ``text/event-stream``: a named event with its id and data, or
    (``event`` empty, ``comment`` set) a comment line such as a keepalive."""

    event: str = ""
    id: str | None = None
    data: str = ""
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def json(self) -> Document:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError(f"event data is not a JSON object: {self.data[:200]!r}")
        return value


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
        """Follow job ``job_id`` until it is COMPLETED, FAILED or CANCELLED; return that document.

        ``on_update`` gets the document first as read, then each time its state, attempt,
        progress or cancel request changed (the final document included). The job is
        followed through ``GET /jobs/{id}/events``, which sends each transition as it
        happens; the document is read again only when a transition brings news the
        event does not carry (an error, a result). An API without that route is polled
        every ``poll_seconds`` instead.

        When the stream drops or cannot be opened (the API restarting, Redis away for a
        moment), it is opened again with ``Last-Event-ID``, so no transition is missed,
        after growing pauses, for up to ``outage_seconds`` without an answer.

        :raises WaitTimeoutError: when ``timeout`` seconds pass first; the job carries on.
            With the stream, the wait ends within one keepalive (15 s) of the timeout.
        :raises ApiError: when the job cannot be followed for good, or the outage lasts
            too long; the job carries on.
        """
        follow = _Following(self, job_id, on_update, timeout, outage_seconds, poll_seconds)
        follow.update(follow.retrying(lambda: self.get(job_id)))
        while not _finished(follow.job):
            try:
                follow.stream()
            except ApiError as exc:
                if exc.status == 404 and _missing_route(exc):
                    return self._poll(follow, job_id, poll_seconds)
                follow.failed(exc)
        return follow.job

    def _poll(self, follow: _Following, job_id: str, poll_seconds: float) -> Document:
        """The wait for an API that has no event stream: read the job every ``poll_seconds``."""
        while True:
            job = follow.retrying(lambda: self.get(job_id))
            follow.update(job)
            if _finished(job):
                return job
            follow.check_deadline()
            time.sleep(poll_seconds)

    def events(
        self,
        *,
        type: str | None = None,
        state: str | None = None,
        last_event_id: str | None = None,
        outage_seconds: float = 60.0,
        on_gap: Callable[[str], None] | None = None,
    ) -> Iterator[Document]:
        """Every transition from now on (or after ``last_event_id``), of jobs of ``type``
        and/or in ``state``, as the data objects of ``GET /events``; never ends by itself.

        A dropped stream is opened again after the last event received, for up to
        ``outage_seconds`` without an answer. ``on_gap`` is told when the API says that
        events after the resume point are no longer kept.

        :raises ApiError: 422 for a bad filter, and when the outage lasts too long.
        """
        params = {name: value for name, value in (("type", type), ("state", state)) if value}
        last = last_event_id
        outage_since: float | None = None
        pause = 0.2
        while True:
            try:
                headers = {"Last-Event-ID": last} if last is not None else {}
                for message in self._stream("/events", params=params, headers=headers):
                    outage_since, pause = None, 0.2
                    gap = message.comment is not None and message.comment.startswith("trimmed")
                    if gap and on_gap is not None:
                        on_gap(str(message.comment))
                    if message.event == "transition":
                        last = message.id or last
                        yield message.json()
            except ApiError as exc:
                if exc.status not in TRANSIENT_STATUSES:
                    raise
                now = time.monotonic()
                outage_since = outage_since or now
                if now - outage_since > outage_seconds:
                    raise
            else:
                # The API ended the stream (it is stopping, or found this reader slow).
                outage_since = outage_since or time.monotonic()
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)

    def _stream(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> Iterator[ServerEvent]:
        """The messages of the event stream at ``path`` until the API ends it.

        :raises ApiError: for an error status, or when the API cannot be reached or the
            stream breaks off (``status`` None).
        """
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT, read=read_timeout)
        request_headers = {"Accept": "text/event-stream", **(headers or {})}
        try:
            with self._http.stream(
                "GET", path, params=params, headers=request_headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response)
                yield from parse_event_stream(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._unreachable(exc, read_timeout) from exc

    def _send(self, method: str, path: str, expected: set[int], **options: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **options)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, READ_TIMEOUT) from exc
        if response.status_code in expected:
            return response
        raise self._error(response)

    def _unreachable(self, exc: httpx.TransportError, read_timeout: float) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(
                f"the API at {self.base_url} is unreachable: no answer in time "
                f"({type(exc).__name__}; connect {CONNECT_TIMEOUT:g} s, read {read_timeout:g} s)",
                status=None,
            )
        return ApiError(f"the API at {self.base_url} is unreachable: {_one_line(exc)}", status=None)

    def _error(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        detail = _error_detail(response)
        message = f"{status} {describe_detail(detail)}"
        if status == 401 and not self._sends_key:
            message += " (no API key was sent; set ORCHESTRATOR_API_KEY)"
        return ApiError(message, status=status, detail=detail)

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


class _Following:
    """The bookkeeping of one :meth:`Client.wait`: what was shown, the deadline, outages."""

    def __init__(
        self,
        client: Client,
        job_id: str,
        on_update: Callable[[Document], None],
        timeout: float | None,
        outage_seconds: float,
        pause: float,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.on_update = on_update
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.outage_seconds = outage_seconds
        self.first_pause = pause
        self.pause = pause
        self.outage_since: float | None = None
        self.seen: tuple[object, ...] | None = None
        self.job: Document = {"id": job_id}
        """The job as last known."""

    def update(self, job: Document) -> None:
        """Take ``job`` as the latest; tell ``on_update`` if it changed in what a person
        follows."""
        self.job = job
        current = (
            job.get("state"),
            job.get("attempts"),
            job.get("progress"),
            job.get("cancel_requested"),
        )
        if current != self.seen:
            self.seen = current
            self.on_update(job)

    def answered(self) -> None:
        self.outage_since, self.pause = None, self.first_pause

    def failed(self, exc: ApiError) -> None:
        """Wait a little after ``exc`` if it may pass, else raise it."""
        if exc.status not in TRANSIENT_STATUSES:
            raise exc
        now = time.monotonic()
        self.outage_since = self.outage_since or now
        if self.deadline is not None and now >= self.deadline:
            raise WaitTimeoutError(self.job, self.timeout or 0.0) from exc
        if now - self.outage_since > self.outage_seconds:
            raise exc
        self.pause = min(self.pause * 2, MAX_PAUSE)
        time.sleep(self.pause)

    def retrying(self, read: Callable[[], Document]) -> Document:
        while True:
            try:
                document = read()
            except ApiError as exc:
                if exc.status not in TRANSIENT_STATUSES:
                    raise
                now = time.monotonic()
                self.outage_since = self.outage_since or now
                if now - self.outage_since > self.outage_seconds or (
                    self.deadline is not None and now >= self.deadline
                ):
                    raise
                self.pause = min(self.pause * 2, MAX_PAUSE)
                time.sleep(self.pause)
                continue
            self.answered()
            return document

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise WaitTimeoutError(self.job, self.timeout or 0.0)

    def stream(self) -> None:
        """Follow the job's events from where it is known to be, until it is finished or
        the API ends the stream."""
        position = len(self.job.get("history") or [])
        read_timeout = READ_TIMEOUT
        if self.deadline is not None:
            read_timeout = max(0.05, min(READ_TIMEOUT, self.deadline - time.monotonic()))
        messages = self.client._stream(
            f"{_job_path(self.job_id)}/events",
            params={"progress": "true"},
            headers={"Last-Event-ID": str(position)},
            read_timeout=read_timeout,
        )
        for message in messages:
            self.answered()
            job = self.job
            if message.event == "transition":
                event = message.json()
                if int(event.get("seq", 0)) > len(job.get("history") or []):
                    # The event says what happened, the document what came of it.
                    job = self.retrying(lambda: self.client.get(self.job_id))
            elif message.event == "progress":
                status = message.json()
                job = {
                    **job,
                    "progress": status.get("progress"),
                    "cancel_requested": status.get("cancel_requested"),
                }
            self.update(job)
            if _finished(job):
                return
            self.check_deadline()
        # The API ended the stream early (stopping, or it found this reader slow): count
        # it as a failed try, so that a stream that keeps ending cannot spin.
        self.failed(ApiError("the event stream ended early", status=None))


def parse_event_stream(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Parse ``text/event-stream`` lines into messages (comments included)."""
    message = ServerEvent()
    data: list[str] = []
    for line in lines:
        if not line:
            if message.event or data:
                message.data = "\n".join(data)
                yield message
            message, data = ServerEvent(), []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if not name:
            yield ServerEvent(comment=value)
        elif name == "data":
            data.append(value)
        elif name == "event":
            message.event = value
        elif name == "id":
            message.id = value
        else:
            message.fields[name] = value


def _finished(job: Document) -> bool:
    return job.get("state") in TERMINAL_STATES


def _missing_route(exc: ApiError) -> bool:
    # FastAPI's answer for a path it has no route for, not the API's "no job with id".
    return exc.detail == "Not Found"


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
