"""``/events`` and ``/jobs/{id}/events``: job transitions as Server-Sent Events.

Every event is ``id: <id>``, ``event: transition`` and ``data: <JSON>`` with the keys
``id, job_id, type, state, from, at, attempt, seq, reason``. A silent stream sends the
comment ``: keepalive`` every ``keepalive_seconds`` so proxies keep it open.

- ``/events`` ids are stream entry ids (``<ms>-<n>``). Without ``Last-Event-ID`` a
  stream starts with what happens next; with it, it first sends every kept entry after
  that id. When the length cap has trimmed entries after it, a comment line says so
  (``: trimmed ...``) and the stream starts from the oldest kept entry.
- ``/jobs/{id}/events`` ids are the positions (``seq``) in the job's history, which is
  kept whole: the stream replays the history after ``Last-Event-ID`` (default: all of
  it), goes on with live events and ends after the terminal one. With
  ``?progress=true`` it also sends ``event: progress`` (no id) whenever the job's
  progress or cancel request changes.

Open streams are capped per API key (with no keys, per client address) and per
process (``max_streams_per_key``, ``max_streams``): past a cap a new stream is 429 with
``Retry-After``, and a stream that ends, however it ends, frees its slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.deps import Authenticated, Authorized, State
from api.fanout import IDLE, FanOut, Subscription
from orchestrator_core import Job
from orchestrator_core.exceptions import StoreUnavailableError
from orchestrator_core.store import canonical_id
from orchestrator_core.telemetry.events import (
    Event,
    EventFilter,
    RunningStatus,
    history_events,
    history_position,
    stream_id,
    stream_order,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["events"], dependencies=[Authorized])

STUCK_GRACE_SECONDS = 1.0
"""How long an ended stream may take to send its end before its connection is dropped."""
KEEPALIVE = b": keepalive\n\n"

ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "a stream of events"},
    401: {"description": "missing or wrong API key"},
    422: {"description": "bad filter or Last-Event-ID"},
    429: {"description": "too many open streams for this key (or address) or this process"},
    503: {"description": "Redis is unavailable, or the API is stopping; see Retry-After"},
}


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that ends when its subscription does.

    A client that stopped reading leaves the server stuck sending to it; once its
    subscription has ended (too slow, or the server stopping) it gets
    :data:`STUCK_GRACE_SECONDS`, then its connection is dropped.
    """

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncGenerator[bytes], subscription: Subscription, fanout: FanOut
    ) -> None:
        super().__init__(
            chunks,
            media_type=self.media_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.chunks = chunks
        self.subscription = subscription
        self.fanout = fanout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            # The generator frees the slot when it ends, but one that never started
            # (the client gone before the first chunk) has no ``finally`` to run.
            self.fanout.unsubscribe(self.subscription)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        complete = False
        async with anyio.create_task_group() as group:

            async def until_disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    continue
                group.cancel_scope.cancel()

            async def until_stuck() -> None:
                await self.subscription.gone.wait()
                await anyio.sleep(STUCK_GRACE_SECONDS)
                group.cancel_scope.cancel()

            group.start_soon(until_disconnected)
            group.start_soon(until_stuck)
            complete = await self._send_all(send)
            group.cancel_scope.cancel()
        if complete:
            with anyio.move_on_after(STUCK_GRACE_SECONDS):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_all(self, send: Send) -> bool:
        try:
            async with aclosing(self.chunks) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            return False  # the client went away
        except Exception:
            logger.exception("an event stream failed; ending it")
        return True


@router.get("/events", status_code=200, response_class=EventStream, responses=ERRORS)
async def all_events(
    state: State,
    caller: Authenticated,
    request: Request,
    job_state: Annotated[str | None, Query(alias="state")] = None,
    job_type: Annotated[str | None, Query(alias="type", max_length=200)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventStream:
    """Transitions of every job, or of those of one state and/or type, as they happen;
    with ``Last-Event-ID``, first every kept one after it."""
    wants = EventFilter.parse(state=job_state, job_type=job_type)
    after = stream_id(last_event_id) if last_event_id is not None else None
    fanout = _open(state.fanout)
    sub = await fanout.subscribe(owner=caller.owner or _address(request), wants=wants)
    try:
        trimmed = None
        if after is None:
            after = await run_in_threadpool(fanout.log.last_id)
        else:
            trimmed = await run_in_threadpool(fanout.log.trimmed_after, after)
    except BaseException:
        fanout.unsubscribe(sub)
        raise
    if trimmed is not None:
        logger.info("a stream resumes after %s, trimmed up to %s", after, trimmed)
    return EventStream(_every_job(fanout, sub, wants, after, trimmed), sub, fanout)


@router.get(
    "/jobs/{job_id}/events",
    status_code=200,
    response_class=EventStream,
    responses={**ERRORS, 404: {"description": "no such job"}},
)
async def job_events(
    job_id: str,
    state: State,
    caller: Authenticated,
    request: Request,
    progress: Annotated[bool, Query()] = False,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventStream:
    """The job's transitions: its history after ``Last-Event-ID``, then each as it
    happens, ending after the terminal one."""
    after = history_position(last_event_id) if last_event_id is not None else 0
    job_id = canonical_id(job_id)
    fanout = _open(state.fanout)
    # Subscribed before the document is read: a transition is in one or the other.
    sub = await fanout.subscribe(
        owner=caller.owner or _address(request), job_id=job_id, progress=progress
    )
    try:
        job = await run_in_threadpool(state.store.get, job_id)
    except BaseException:
        fanout.unsubscribe(sub)
        raise
    return EventStream(_one_job(fanout, sub, job, after, progress=progress), sub, fanout)


def _address(request: Request) -> str:
    """Whose streams these are on an API with no keys: the client's address (behind a
    proxy, the proxy's, which all its clients then share)."""
    client = request.client
    return f"client {client.host if client is not None else 'unknown'}"


def _open(fanout: FanOut) -> FanOut:
    if fanout.closed:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the API is shutting down; try again shortly",
            headers={"Retry-After": "1"},
        )
    return fanout


async def _every_job(
    fanout: FanOut, sub: Subscription, wants: EventFilter, after: str, trimmed: str | None
) -> AsyncGenerator[bytes]:
    try:
        if trimmed is not None:
            yield (
                f": trimmed: events after {after} and before {trimmed} are no longer kept\n\n"
            ).encode()
        last = after
        pause = 0.1
        while True:  # catch up from the stream; live events wait in the queue meanwhile
            if sub.ended is not None:
                return
            try:
                page = await run_in_threadpool(fanout.log.read, last, count=fanout.batch)
            except StoreUnavailableError:
                yield KEEPALIVE
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            for event in page:
                if wants.matches(event):
                    yield _frame(event)
            if page:
                last = page[-1].id
            if len(page) < fanout.batch:
                break
        while (item := await sub.next(fanout.keepalive_seconds)) is not None:
            if item is IDLE:
                yield KEEPALIVE
            elif isinstance(item, Event) and stream_order(item.id) > stream_order(last):
                last = item.id
                yield _frame(item)
    finally:
        fanout.unsubscribe(sub)


async def _one_job(
    fanout: FanOut, sub: Subscription, job: Job, after: int, *, progress: bool
) -> AsyncGenerator[bytes]:
    try:
        sent = after
        for event in history_events(job, after=sent):
            yield _frame(event)
            sent = event.seq
        if job.state.terminal:
            return
        shown = RunningStatus(job.id, None, cancel_requested=False)
        if progress:
            current = RunningStatus(job.id, job.progress, job.cancel_requested)
            if current != shown:
                shown = current
                yield _progress_frame(current)
        while (item := await sub.next(fanout.keepalive_seconds)) is not None:
            if item is IDLE:
                yield KEEPALIVE
            elif isinstance(item, Event):
                if item.seq <= sent:
                    continue
                sent = item.seq
                yield _frame(dataclasses.replace(item, id=str(item.seq)))
                if item.state.terminal:
                    return
            elif item != shown:
                shown = item
                yield _progress_frame(item)
    finally:
        fanout.unsubscribe(sub)


def _frame(event: Event) -> bytes:
    data = json.dumps(event.as_json(), separators=(",", ":"))
    return f"id: {event.id}\nevent: transition\ndata: {data}\n\n".encode()


def _progress_frame(status: RunningStatus) -> bytes:
    data = json.dumps(status.as_json(), separators=(",", ":"))
    return f"event: progress\ndata: {data}\n\n".encode()
