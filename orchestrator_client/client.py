"""The blocking client, on :class:`httpx.Client`, for services and the command line."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from contextlib import closing
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from orchestrator_client import requests
from orchestrator_client.base import BaseClient
from orchestrator_client.following import Following
from orchestrator_client.requests import Call, StreamCall
from orchestrator_client.responses import Document
from orchestrator_client.stream import EventStreamParser, ServerEvent
from orchestrator_client.subscription import Subscription
from orchestrator_core.exceptions import ApiError

T = TypeVar("T")


class Client(BaseClient):
    """The REST API at ``base_url``, with ``api_key`` sent as a bearer token when given.

    Documents come back as the plain JSON objects the API sent. Every failure, an error
    status or an API that cannot be reached, is an :class:`ApiError`. Use it as a
    context manager (or call :meth:`close`) so its connections are closed.

    :raises ConfigurationError: when ``base_url`` is not an http(s) URL.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key)
        self._http = httpx.Client(**self._api.http_options, transport=transport)

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
        priority: int | None = None,
        concurrency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
    ) -> Document:
        """Submit a job and return its document (the original job's, for a repeated key).

        :param priority: 0..9, higher first among waiting jobs; default the type's.
        :param concurrency_key: what the type's per-key limits count by (a tenant id).
        :param delay: seconds before the job may start; or instead
        :param run_at: when it may start, a timezone-aware instant (or RFC 3339 text).
        :raises ApiError: 422 for an unknown type or an invalid payload, among others.
        """
        call = requests.submit(
            type,
            payload,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            priority=priority,
            concurrency_key=concurrency_key,
            delay=delay,
            run_at=run_at,
        )
        return self._call(call)

    def submit_batch(
        self, jobs: list[Document], *, idempotency_key: str | None = None
    ) -> list[Document]:
        """Submit many jobs in one request (each a ``{"type", "payload", "max_attempts"?}``
        object): all of them, in order, or none.

        :raises ApiError: 422 naming each invalid item by its index (nothing was created).
        """
        return self._call(requests.submit_batch(jobs, idempotency_key=idempotency_key))

    def get(self, job_id: str) -> Document:
        """The document of job ``job_id``.

        :raises ApiError: 404 when there is no such job.
        """
        return self._call(requests.get_job(job_id))

    def cancel(self, job_id: str) -> tuple[int, Document]:
        """Ask for job ``job_id`` to be cancelled; return the status and the job's document.

        The status is 202 when the job is (or will soon be) CANCELLED, and 409 when it had
        already COMPLETED or FAILED, which leaves it unchanged.

        :raises ApiError: 404 when there is no such job.
        """
        return self._call(requests.cancel_job(job_id))

    def rerun(self, job_id: str) -> Document:
        """Submit a new job like the finished job ``job_id`` (same type, payload, priority
        and key); return the new job's document, whose ``rerun_of`` names the old one.

        :raises ApiError: 409 when the job has not finished, 404 when there is none.
        """
        return self._call(requests.rerun_job(job_id))

    def job_types(self) -> list[Document]:
        """The catalog: every installed job type, with its effective limits and overrides."""
        return self._call(requests.job_types())

    def job_type(self, name: str) -> Document:
        """The catalog entry of job type ``name``.

        :raises ApiError: 404 when no such type is installed.
        """
        return self._call(requests.job_type(name))

    def update_job_type(self, name: str, **changes: Any) -> Document:
        """Override job type ``name``'s flow control for the whole deployment, e.g.
        ``update_job_type("acme.mail", concurrency=5, paused=True)``; a field given as
        None goes back to the type's own value. Return the catalog entry.

        :param changes: any of priority, concurrency, concurrency_per_key, rate_limit,
            rate_limit_per_key (``"20/s"``) and paused.
        :raises ApiError: 422 for an unknown field or a bad value (nothing is changed),
            404 for an unknown type.
        """
        return self._call(requests.update_job_type(name, changes))

    def jobs(
        self,
        *,
        state: str | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Document:
        """One page of jobs, newest first: ``{"items": [...], "next_cursor": str | None}``."""
        return self._call(requests.list_jobs(state=state, type=type, limit=limit, cursor=cursor))

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
        follow = Following(
            job_id,
            on_update,
            poll_seconds=poll_seconds,
            timeout=timeout,
            outage_seconds=outage_seconds,
        )
        self._refresh(follow)
        while not follow.finished:
            try:
                self._listen(follow)
            except ApiError as exc:
                if follow.lacks_stream(exc):
                    return self._poll(follow)
                pause = follow.failed(exc)
            else:
                pause = follow.ended()
            time.sleep(pause)
        return follow.job

    def events(
        self,
        *,
        type: str | None = None,
        state: str | None = None,
        last_event_id: str | None = None,
        outage_seconds: float = 60.0,
        on_gap: Callable[[str], None] | None = None,
    ) -> Generator[Document, None, None]:
        """Every transition from now on (or after ``last_event_id``), of jobs of ``type``
        and/or in ``state``, as the data objects of ``GET /events``; never ends by itself.

        A dropped stream is opened again after the last event received, for up to
        ``outage_seconds`` without an answer. ``on_gap`` is told when the API says that
        events after the resume point are no longer kept.

        :raises ApiError: 422 for a bad filter, and when the outage lasts too long.
        """
        feed = Subscription(
            type=type,
            state=state,
            last_event_id=last_event_id,
            outage_seconds=outage_seconds,
            on_gap=on_gap,
        )
        while True:
            try:
                with closing(self._stream(feed.stream_call())) as messages:
                    for message in messages:
                        if (event := feed.receive(message)) is not None:
                            yield event
            except ApiError as exc:
                pause = feed.failed(exc)
            else:
                pause = feed.ended()
            time.sleep(pause)

    def _listen(self, follow: Following) -> None:
        """Follow the job's stream until the job is finished or the API ends the stream."""
        with closing(self._stream(follow.stream_call())) as messages:
            for message in messages:
                if follow.receive(message):
                    self._refresh(follow)
                if follow.done():
                    return

    def _poll(self, follow: Following) -> Document:
        """The wait for an API that has no event stream: read the job every ``poll_seconds``."""
        while True:
            self._refresh(follow)
            if follow.done():
                return follow.job
            time.sleep(follow.poll_seconds)

    def _refresh(self, follow: Following) -> None:
        """Read the job again for ``follow``, through an outage."""
        while True:
            try:
                job = self.get(follow.job_id)
                break
            except ApiError as exc:
                time.sleep(follow.failed(exc))
        follow.update(job)

    def _call(self, call: Call[T]) -> T:
        try:
            response = self._http.send(self._api.request(self._http, call))
        except httpx.TransportError as exc:
            raise self._api.unreachable(exc) from exc
        return self._api.read(call, response)

    def _stream(self, call: StreamCall) -> Generator[ServerEvent, None, None]:
        """The messages of the event stream ``call`` until the API ends it.

        :raises ApiError: for an error status, or when the API cannot be reached or the
            stream breaks off (``status`` None).
        """
        parser = EventStreamParser()
        try:
            request = self._api.stream_request(self._http, call)
            with closing(self._http.send(request, stream=True)) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._api.refusal(response)
                for line in response.iter_lines():
                    if (message := parser.feed(line)) is not None:
                        yield message
        except httpx.TransportError as exc:
            raise self._api.unreachable(exc, read_timeout=call.read_timeout) from exc
