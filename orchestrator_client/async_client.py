"""The asyncio client, on :class:`httpx.AsyncClient`, for services that run an event loop.

It is :class:`~orchestrator_client.Client` awaited: the same methods, arguments,
documents and errors, built from the same requests, answers and bookkeeping; only the
sends, the streams and the pauses are its own. Each private method is its namesake in
``Client`` with the I/O awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
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


class AsyncClient(BaseClient):
    """The REST API at ``base_url``, with ``api_key`` sent as a bearer token when given,
    as :class:`~orchestrator_client.Client` but awaited.

    Use it as an async context manager (or await :meth:`aclose`) so its connections are
    closed.

    :raises ConfigurationError: when ``base_url`` is not an http(s) URL.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key)
        self._http = httpx.AsyncClient(**self._api.http_options, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def submit(
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
        """As :meth:`Client.submit <orchestrator_client.Client.submit>`."""
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
        return await self._call(call)

    async def submit_batch(
        self, jobs: list[Document], *, idempotency_key: str | None = None
    ) -> list[Document]:
        """As :meth:`Client.submit_batch <orchestrator_client.Client.submit_batch>`."""
        return await self._call(requests.submit_batch(jobs, idempotency_key=idempotency_key))

    async def get(self, job_id: str) -> Document:
        """As :meth:`Client.get <orchestrator_client.Client.get>`."""
        return await self._call(requests.get_job(job_id))

    async def cancel(self, job_id: str) -> tuple[int, Document]:
        """As :meth:`Client.cancel <orchestrator_client.Client.cancel>`."""
        return await self._call(requests.cancel_job(job_id))

    async def rerun(self, job_id: str) -> Document:
        """As :meth:`Client.rerun <orchestrator_client.Client.rerun>`."""
        return await self._call(requests.rerun_job(job_id))

    async def job_types(self) -> list[Document]:
        """As :meth:`Client.job_types <orchestrator_client.Client.job_types>`."""
        return await self._call(requests.job_types())

    async def job_type(self, name: str) -> Document:
        """As :meth:`Client.job_type <orchestrator_client.Client.job_type>`."""
        return await self._call(requests.job_type(name))

    async def update_job_type(self, name: str, **changes: Any) -> Document:
        """As :meth:`Client.update_job_type <orchestrator_client.Client.update_job_type>`."""
        return await self._call(requests.update_job_type(name, changes))

    async def jobs(
        self,
        *,
        state: str | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Document:
        """As :meth:`Client.jobs <orchestrator_client.Client.jobs>`."""
        call = requests.list_jobs(state=state, type=type, limit=limit, cursor=cursor)
        return await self._call(call)

    async def wait(
        self,
        job_id: str,
        *,
        on_update: Callable[[Document], None],
        poll_seconds: float = 0.2,
        timeout: float | None = None,
        outage_seconds: float = 60.0,
    ) -> Document:
        """As :meth:`Client.wait <orchestrator_client.Client.wait>`; ``on_update`` is
        called, not awaited, so it should return promptly."""
        follow = Following(
            job_id,
            on_update,
            poll_seconds=poll_seconds,
            timeout=timeout,
            outage_seconds=outage_seconds,
        )
        await self._refresh(follow)
        while not follow.finished:
            try:
                await self._listen(follow)
            except ApiError as exc:
                if follow.lacks_stream(exc):
                    return await self._poll(follow)
                pause = follow.failed(exc)
            else:
                pause = follow.ended()
            await asyncio.sleep(pause)
        return follow.job

    async def events(
        self,
        *,
        type: str | None = None,
        state: str | None = None,
        last_event_id: str | None = None,
        outage_seconds: float = 60.0,
        on_gap: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[Document, None]:
        """As :meth:`Client.events <orchestrator_client.Client.events>`, iterated with
        ``async for``. Close it when done (``contextlib.aclosing``), so that its stream is
        closed then rather than when the iterator is collected."""
        feed = Subscription(
            type=type,
            state=state,
            last_event_id=last_event_id,
            outage_seconds=outage_seconds,
            on_gap=on_gap,
        )
        while True:
            try:
                async with aclosing(self._stream(feed.stream_call())) as messages:
                    async for message in messages:
                        if (event := feed.receive(message)) is not None:
                            yield event
            except ApiError as exc:
                pause = feed.failed(exc)
            else:
                pause = feed.ended()
            await asyncio.sleep(pause)

    async def _listen(self, follow: Following) -> None:
        async with aclosing(self._stream(follow.stream_call())) as messages:
            async for message in messages:
                if follow.receive(message):
                    await self._refresh(follow)
                if follow.done():
                    return

    async def _poll(self, follow: Following) -> Document:
        while True:
            await self._refresh(follow)
            if follow.done():
                return follow.job
            await asyncio.sleep(follow.poll_seconds)

    async def _refresh(self, follow: Following) -> None:
        while True:
            try:
                job = await self.get(follow.job_id)
                break
            except ApiError as exc:
                await asyncio.sleep(follow.failed(exc))
        follow.update(job)

    async def _call(self, call: Call[T]) -> T:
        try:
            response = await self._http.send(self._api.request(self._http, call))
        except httpx.TransportError as exc:
            raise self._api.unreachable(exc) from exc
        return self._api.read(call, response)

    async def _stream(self, call: StreamCall) -> AsyncGenerator[ServerEvent, None]:
        parser = EventStreamParser()
        try:
            request = self._api.stream_request(self._http, call)
            async with aclosing(await self._http.send(request, stream=True)) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._api.refusal(response)
                async for line in response.aiter_lines():
                    if (message := parser.feed(line)) is not None:
                        yield message
        except httpx.TransportError as exc:
            raise self._api.unreachable(exc, read_timeout=call.read_timeout) from exc
