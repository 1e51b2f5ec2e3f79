"""Keeps every job message a worker holds younger than the broker's ``consumer_timeout``.

RabbitMQ closes a consumer's channel when a delivery stays unacknowledged longer than its
``consumer_timeout`` (30 minutes by default) and delivers again everything the channel
held. With late acks (``dispatch/broker.py``) that would be the message of every job
running longer, and every message reserved behind such a job.

A message guards its job only until the attempt it asks for has started in Redis. From
then on the job is RUNNING under a lease, which the sweep watches (a worker that dies
stops renewing it, and the job is published again: DESIGN section 8), or RETRYING on the
retry schedule, or finished; each of those is safe without the message. So once a
message has been held for ``early_ack_seconds``, the consumer process (the one that owns
the channel) acknowledges it when the job's ``attempts`` has reached the message's
attempt, and gives it back to the queue when no pool process has taken it yet, so that
an idle worker may run it: as a fresh confirmed copy, the held one then acknowledged,
since a quorum queue counts a requeue as a delivery and dead-letters a message past its
limit (rejected with requeue only when the copy cannot be confirmed). Until then
nothing is done for a message: one repeating timer on the consumer's event loop looks at
what the worker holds, so a short job costs no Redis call and no timer entry of its own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis
from celery import bootsteps
from celery.worker.state import reserved_requests, task_ready

from orchestrator_core.dispatch.broker import TASK_NAME
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.exceptions import JobNotFoundError, StoreUnavailableError
from orchestrator_core.settings import Settings
from orchestrator_core.store.connection import connect_redis, redis_errors
from orchestrator_core.store.jobs import canonical_id
from orchestrator_core.store.keys import Keys
from worker.message import JobMessage, job_message, queue_again

logger = logging.getLogger(__name__)

TICKS_PER_DELAY = 10
"""How often the held messages are looked at, per ``early_ack_seconds``: each is acted on
between the delay and 1.2 times the delay after it arrived."""
MIN_TICK_SECONDS = 0.05


class HeldRequest(Protocol):
    """What the acknowledger uses of a Celery ``Request`` (``celery/worker/request.py``)."""

    id: str
    name: str
    acknowledged: bool
    time_start: float | None
    """Set when a pool process accepts the request, None while it waits for one."""
    delivery_info: Mapping[str, Any] | None
    """Where the message came from: its ``routing_key`` (the queue) and ``priority``."""

    @property
    def args(self) -> Sequence[object]: ...

    def acknowledge(self) -> None: ...

    def reject(self, requeue: bool = False) -> None: ...


Requeue = Callable[[Mapping[str, Any] | None, JobMessage], bool]
"""Queues a fresh confirmed copy of a held message: :func:`~worker.message.queue_again`
with a publisher. True when the broker confirmed it."""

Waiters = deque[tuple[Any, tuple[Any, ...], dict[str, Any]]]
"""The requests waiting for a free pool process: the ``(callback, args, kwargs)`` entries
of the worker's semaphore (kombu's ``LaxBoundedSemaphore``), ``args`` being the request."""


class Acknowledger:
    """Acknowledges or gives back each job message held for ``delay`` seconds.

    :param client: a client made by :func:`connect_redis`, used from the consumer's
        event loop only: one pipelined ``HGET`` per tick that has a started job due,
        which holds the loop up for a round trip (the socket timeout, Redis being away).
    :param requeue: queues the copy of a message given back; each copy holds the loop up
        for the publish and its confirm (the publish timeout at most). Without it, a message
        given back is rejected with requeue.
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, *, delay: float, requeue: Requeue | None = None
    ) -> None:
        self._redis = client
        self._keys = keys
        self._requeue = requeue
        self.delay = delay
        self.interval = max(delay / TICKS_PER_DELAY, MIN_TICK_SECONDS)
        self._held: dict[HeldRequest, float] = {}
        """Each held request and when a tick first saw it (monotonic clock)."""

    def tick(
        self, requests: Iterable[HeldRequest], waiters: Waiters | None, now: float | None = None
    ) -> None:
        """Look at the requests the worker holds; act on those held for the delay.

        :param requests: every request the worker has reserved (Celery's
            ``reserved_requests``, which holds the running ones too).
        :param waiters: where the requests waiting for a free process are, if known.
        """
        now = time.monotonic() if now is None else now
        held = {
            request: self._held.get(request, now)
            for request in tuple(requests)
            if request.name == TASK_NAME and not request.acknowledged
        }
        self._held = held
        due = [request for request, since in held.items() if now - since >= self.delay]
        if not due:
            return
        started = []
        for request in due:
            if request.time_start is not None:
                started.append((request, now - held[request]))
            else:
                self._hand_back(request, waiters, now - held[request])
        if started:
            self._acknowledge_started(started)

    def _acknowledge_started(self, requests: list[tuple[HeldRequest, float]]) -> None:
        """Acknowledge the messages whose attempt has started in Redis (or whose job is
        gone); the others are looked at again on the next tick.

        :param requests: each request with how long it has been held.
        """
        messages: list[tuple[HeldRequest, float, JobMessage, str]] = []
        for request, held_for in requests:
            message = job_message(request.args)
            if message is None:
                continue  # not ours: the task drops it at once, and acks it then
            try:
                messages.append((request, held_for, message, canonical_id(message.job_id)))
            except JobNotFoundError:
                continue  # no job can have that id; the task drops it at once too
        if not messages:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for *_, job_id in messages:
                pipe.hget(self._keys.job(job_id), "attempts")
            try:
                with redis_errors("reading the attempts of long-running jobs"):
                    replies = pipe.execute()
            except StoreUnavailableError as exc:
                logger.warning("messages held for %gs not acknowledged yet: %s", self.delay, exc)
                return
        for (request, held_for, message, _), attempts in zip(messages, replies, strict=True):
            if attempts is not None and not _reached(attempts, message.attempt):
                continue  # not started yet: the message is still all the job has
            request.acknowledge()
            self._held.pop(request, None)
            logger.info(
                "job %s attempt %d: message acknowledged after %.0fs, its start being in "
                "Redis; the job's lease guards it from now on",
                message.job_id,
                message.attempt,
                held_for,
            )

    def _hand_back(self, request: HeldRequest, waiters: Waiters | None, held_for: float) -> None:
        """Give a message no pool process has taken back to the queue, where an idle
        worker may take it, before it grows older than the broker allows."""
        entry = next(
            (e for e in waiters or () if len(e[1]) == 1 and e[1][0] is request),
            None,
        )
        if entry is None or waiters is None:
            return  # being written to a pool process: it starts in a moment
        waiters.remove(entry)
        task_ready(request)
        self._held.pop(request, None)
        message = job_message(request.args)
        if (
            message is not None
            and self._requeue is not None
            and self._requeue(request.delivery_info, message)
        ):
            request.acknowledge()
        else:
            request.reject(requeue=True)
        logger.info(
            "job %s: message given back to the queue after %.0fs waiting for a free process",
            message.job_id if message is not None else request.id,
            held_for,
        )


def _reached(attempts: str, attempt: int) -> bool:
    try:
        return int(attempts) >= attempt
    except ValueError:
        return False  # a malformed job: leave its message to the task, which drops it


def acknowledger_step(settings: Settings) -> type[Any]:
    """A consumer bootstep running an :class:`Acknowledger` of ``settings`` on the
    consumer's event loop, where Celery itself acknowledges messages."""

    class AcknowledgerStep(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.app = parent.app
            self.publisher: Publisher | None = None
            self.acknowledger = Acknowledger(
                connect_redis(settings),
                Keys(settings.prefix),
                delay=settings.early_ack_seconds,
                requeue=self._requeue,
            )
            self.entry: Any = None

        def _requeue(self, delivery: Mapping[str, Any] | None, message: JobMessage) -> bool:
            if self.publisher is None:  # opened on the first message given back: rarely
                self.publisher = Publisher.from_settings(settings, app=self.app)
            return queue_again(self.publisher, delivery, message)

        def start(self, parent: Any) -> None:
            if parent.hub is None:
                logger.warning("no event loop: messages are acknowledged when their job ends")
                return
            if _waiters(parent) is None:
                logger.warning(
                    "messages waiting for a free process cannot be given back to the queue"
                )
            self.entry = parent.hub.call_repeatedly(self.acknowledger.interval, self._tick, parent)

        def _tick(self, parent: Any) -> None:
            try:
                self.acknowledger.tick(reserved_requests, _waiters(parent))
            except Exception:
                # The timer repeats whatever happens; each tick must leave the loop intact.
                logger.exception("looking at the held messages failed")

        def stop(self, parent: Any) -> None:
            if self.entry is not None:
                self.entry.cancel()
                self.entry = None

        def shutdown(self, parent: Any) -> None:
            self.stop(parent)
            if self.publisher is not None:
                self.publisher.close()
                self.publisher = None

    return AcknowledgerStep


def _waiters(consumer: Any) -> Waiters | None:
    """Where the worker's requests wait for a free pool process: its semaphore's queue of
    callbacks, which kombu keeps in ``_waiting`` (a test of the hand-back fails if a kombu
    release moves it)."""
    controller = consumer.controller
    semaphore = controller.semaphore if controller is not None else None
    waiters = getattr(semaphore, "_waiting", None)
    return waiters if isinstance(waiters, deque) else None
