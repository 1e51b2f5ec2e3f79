"""One reader of the event stream per API process, shared by every open event stream.

A thread does the blocking ``XREAD`` (a short block, well under the Redis socket timeout)
and hands each batch to the event loop, which copies every event into the bounded
queue of each subscription that wants it. So a thousand open streams cost one Redis
connection, not a thousand. The same thread reads, in one round trip a few times a
second, the progress of the jobs whose streams asked for it (progress is not a
transition, so it is not in the stream).

Each API key (or, with no keys, each client address) may hold ``max_streams_per_owner``
streams at once, and the process ``max_streams``: past either cap a new stream is
refused with :class:`TooManyStreamsError`, so one client cannot take every stream (and
the memory of their queues). A stream's slot is freed when its subscription goes, however
it ends: finished, disconnected, too slow, or closed by the server stopping.

A subscription whose queue fills up is ended: its client is too slow to keep up (or
stopped reading), and it resumes with ``Last-Event-ID`` once it reconnects, which loses
it nothing and keeps this process's memory bounded.

When Redis goes away the reader retries with growing pauses and resumes after the
last entry it handed on, so no event is lost; open streams keep sending keepalives.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Final

from fastapi.concurrency import run_in_threadpool

from orchestrator_core.exceptions import StoreUnavailableError, TooManyStreamsError
from orchestrator_core.telemetry.events import Event, EventFilter, EventLog, RunningStatus

logger = logging.getLogger(__name__)

Item = Event | RunningStatus


class End(enum.Enum):
    """Why a subscription ended."""

    SLOW = "too slow to keep up"
    CLOSING = "the API is shutting down"


class Idle(enum.Enum):
    """What :meth:`Subscription.next` returns when nothing came in time."""

    IDLE = "idle"


IDLE: Final = Idle.IDLE


class Subscription:
    """The events one open stream receives, oldest first, and why it ended if it did."""

    def __init__(
        self,
        *,
        capacity: int,
        wants: EventFilter | None,
        job_id: str | None,
        progress: bool,
        owner: str = "",
    ) -> None:
        self.capacity = capacity
        self.wants = wants
        self.job_id = job_id
        self.progress = progress
        self.owner = owner
        """Whose stream cap it counts against: an API key's name, or a client address."""
        self.holds_slot = False
        self.ended: End | None = None
        self.gone = asyncio.Event()
        """Set when the subscription ends, for a response stuck sending to a slow client."""
        self._items: deque[Item] = deque()
        self._ready = asyncio.Event()

    def offer(self, item: Item) -> bool:
        """Queue ``item``; False when the queue is full and the subscription ended for it."""
        if self.ended is not None:
            return False
        if len(self._items) >= self.capacity:
            self.end(End.SLOW)
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def end(self, reason: End) -> None:
        if self.ended is None:
            self.ended = reason
            self._items.clear()
            self._ready.set()
            self.gone.set()

    async def next(self, timeout: float) -> Item | Idle | None:
        """The next item; :data:`IDLE` when none came within ``timeout`` seconds; None once
        the subscription has ended."""
        if not self._items and self.ended is None:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return IDLE
        if self.ended is not None:
            return None
        return self._items.popleft()


class FanOut:
    """Delivers the event stream to subscriptions; one per API process.

    :param log: the stream to read.
    :param block_ms: how long one read waits for new entries; keep it well under the
        Redis socket timeout, or an idle stream would look like a dead Redis.
    :param capacity: events a subscription may hold unsent before it counts as too slow.
    :param keepalive_seconds: how long an open stream stays silent before a comment line.
    :param progress_seconds: how often the progress of followed running jobs is read.
    :param batch: entries read at a time; a subscription holds several batches.
    :param max_streams: subscriptions this process holds at once.
    :param max_streams_per_owner: subscriptions one owner (an API key, or a client
        address) holds at once.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        block_ms: int,
        capacity: int = 1000,
        keepalive_seconds: float = 15.0,
        progress_seconds: float = 0.25,
        batch: int = 200,
        max_streams: int = 512,
        max_streams_per_owner: int = 16,
    ) -> None:
        self.log = log
        self.max_streams = max_streams
        self.max_streams_per_owner = max_streams_per_owner
        self._slots: dict[str, int] = {}
        self._slots_taken = 0
        self.block_ms = block_ms
        self.capacity = capacity
        self.keepalive_seconds = keepalive_seconds
        self.progress_seconds = progress_seconds
        self.batch = batch
        self.closed = False
        self._everyone: set[Subscription] = set()
        self._by_job: defaultdict[str, set[Subscription]] = defaultdict(set)
        # Replaced whole on the event loop, read by the reader thread: no lock needed.
        self._progress_jobs: frozenset[str] = frozenset()
        self._last_status: dict[str, RunningStatus] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._starting = asyncio.Lock()
        self._stop = threading.Event()

    @classmethod
    def for_socket_timeout(
        cls, log: EventLog, socket_timeout: float, *, max_streams: int, max_streams_per_owner: int
    ) -> FanOut:
        """A fan-out whose reads block for a quarter of ``socket_timeout``, 1 s at most."""
        return cls(
            log,
            block_ms=max(50, min(1000, int(socket_timeout * 1000 / 4))),
            max_streams=max_streams,
            max_streams_per_owner=max_streams_per_owner,
        )

    @property
    def subscribers(self) -> int:
        return len(self._everyone) + sum(len(subs) for subs in self._by_job.values())

    async def subscribe(
        self,
        *,
        owner: str,
        wants: EventFilter | None = None,
        job_id: str | None = None,
        progress: bool = False,
    ) -> Subscription:
        """A subscription to every event read from now on that ``wants`` (or of job
        ``job_id``); with ``progress``, also to that job's progress. It takes one of
        ``owner``'s stream slots until :meth:`unsubscribe`.

        Every entry added to the stream after this returns will be offered to it.

        :raises TooManyStreamsError: ``owner`` or this process holds its cap of streams.
        :raises StoreUnavailableError: when the reader has yet to start and Redis is down.
        """
        await self._start_reader()
        sub = Subscription(
            capacity=self.capacity, wants=wants, job_id=job_id, progress=progress, owner=owner
        )
        if self.closed:
            sub.end(End.CLOSING)
            return sub
        self._take_slot(sub)
        if job_id is None:
            self._everyone.add(sub)
        else:
            self._by_job[job_id].add(sub)
            if progress:
                self._progress_jobs = self._progress_jobs | {job_id}
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` and free its slot; calling it again does nothing."""
        self._free_slot(sub)
        if sub.job_id is None:
            self._everyone.discard(sub)
            return
        subs = self._by_job.get(sub.job_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._by_job[sub.job_id]
        if sub.progress and not any(s.progress for s in subs):
            self._progress_jobs = self._progress_jobs - {sub.job_id}
            self._last_status.pop(sub.job_id, None)

    def close_streams(self) -> None:
        """End every open stream and refuse new ones: the server is stopping."""
        if self.closed:
            return
        self.closed = True
        subs = [*self._everyone, *(s for group in self._by_job.values() for s in group)]
        for sub in subs:
            sub.end(End.CLOSING)
            self._free_slot(sub)
        self._everyone.clear()
        self._by_job.clear()
        self._progress_jobs = frozenset()

    def streams_of(self, owner: str) -> int:
        """How many streams ``owner`` holds open now."""
        return self._slots.get(owner, 0)

    def _take_slot(self, sub: Subscription) -> None:
        held = self._slots.get(sub.owner, 0)
        if held >= self.max_streams_per_owner:
            raise TooManyStreamsError(
                f"{sub.owner} already holds {held} open event streams, its limit; "
                "close one, or try again later",
                limit=self.max_streams_per_owner,
            )
        if self._slots_taken >= self.max_streams:
            raise TooManyStreamsError(
                f"this API process serves {self._slots_taken} event streams, its limit; "
                "try again later",
                limit=self.max_streams,
            )
        self._slots[sub.owner] = held + 1
        self._slots_taken += 1
        sub.holds_slot = True

    def _free_slot(self, sub: Subscription) -> None:
        if not sub.holds_slot:
            return
        sub.holds_slot = False
        self._slots_taken -= 1
        left = self._slots[sub.owner] - 1
        if left:
            self._slots[sub.owner] = left
        else:
            del self._slots[sub.owner]

    async def aclose(self) -> None:
        """End every open stream and stop the reader thread."""
        self.close_streams()
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await run_in_threadpool(thread.join, self.block_ms / 1000 + 5)

    async def _start_reader(self) -> None:
        if self._thread is not None or self.closed:
            return
        async with self._starting:
            if self._thread is not None:
                return
            # The position is taken before the first subscription exists, so that every
            # entry added after it is read by the thread and offered to the subscription.
            position = await run_in_threadpool(self.log.last_id)
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._read, args=(position,), name="event-fanout", daemon=True
            )
            self._thread.start()

    # --- the reader thread ----------------------------------------------------------

    def _read(self, position: str) -> None:
        failures = 0
        progress_due = 0.0
        while not self._stop.is_set():
            try:
                events = self.log.read(position, count=self.batch, block_ms=self.block_ms)
                statuses: list[RunningStatus] = []
                if self._progress_jobs and time.monotonic() >= progress_due:
                    progress_due = time.monotonic() + self.progress_seconds
                    statuses = self.log.running(self._progress_jobs)
            except StoreUnavailableError as exc:
                failures += 1
                if failures == 1:
                    logger.warning("event stream unreadable, retrying after %s: %s", position, exc)
                self._stop.wait(min(0.1 * 2 ** min(failures, 5), 2.0))
                continue
            except Exception:
                logger.exception("event stream reader failed; retrying after %s", position)
                self._stop.wait(1.0)
                continue
            if failures:
                logger.warning("event stream readable again; resuming after %s", position)
                failures = 0
            if events:
                position = events[-1].id
            if (events or statuses) and not self._post(events, statuses):
                return

    def _post(self, events: list[Event], statuses: list[RunningStatus]) -> bool:
        loop = self._loop
        try:
            assert loop is not None
            loop.call_soon_threadsafe(self._deliver, events, statuses)
        except RuntimeError:
            return False  # the event loop has closed: nobody is left to deliver to
        return True

    # --- on the event loop ------------------------------------------------------------

    def _deliver(self, events: Iterable[Event], statuses: Iterable[RunningStatus]) -> None:
        for event in events:
            for sub in list(self._everyone):
                if (sub.wants is None or sub.wants.matches(event)) and not sub.offer(event):
                    self._drop(sub)
            for sub in list(self._by_job.get(event.job_id, ())):
                if not sub.offer(event):
                    self._drop(sub)
        for status in statuses:
            if self._last_status.get(status.job_id) == status:
                continue
            self._last_status[status.job_id] = status
            for sub in list(self._by_job.get(status.job_id, ())):
                if sub.progress and not sub.offer(status):
                    self._drop(sub)

    def _drop(self, sub: Subscription) -> None:
        if sub.ended is End.SLOW:
            logger.warning(
                "an event stream (%s) was too slow to keep up and is disconnected; "
                "it can resume with Last-Event-ID",
                f"job {sub.job_id}" if sub.job_id else "all jobs",
            )
        self.unsubscribe(sub)
