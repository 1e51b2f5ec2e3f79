"""Giving the job queues of an earlier release their priorities, losing no message.

RabbitMQ cannot add ``x-max-priority`` to a queue: the queue must be deleted and
declared again. For each queue without priorities, with its consumers stopped:

1. every message moves to a holding queue (``<queue>~upgrade``, durable): a batch is
   read, published there, confirmed by the broker, and only then acknowledged;
2. the queue is deleted (the broker refuses while it holds a message or has a
   consumer, so a message published meanwhile is moved first) and declared again with
   priorities;
3. every message moves back, each with the priority of its job as Redis has it;
4. the holding queue is deleted (refused while it holds a message).

A crash anywhere loses nothing: a message is acknowledged where it was only once the
other queue has it, so at worst it is in both (a duplicate, which the worker drops).
Running the upgrade again finds where it stopped, from which queues exist: a holding
queue means messages to move back; a queue without priorities, steps 1 and 2 to do.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from amqp import Message as AmqpMessage
from amqp.exceptions import AMQPError, NotFound, PreconditionFailed
from kombu import Connection

from orchestrator_core.dispatch.broker import (
    MAX_PRIORITY,
    QueueKind,
    broker_connection,
    connect_to_broker,
    job_queue,
    queue_for,
    queue_warning,
)
from orchestrator_core.exceptions import BrokerUnavailableError, StoreUnavailableError
from orchestrator_core.settings import Settings
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.keys import Keys

HOLDING_SUFFIX = "~upgrade"
"""Appended to a queue's name to name its holding queue (no job type's queue has a ``~``)."""

BATCH = 200
"""Messages moved per confirm: each batch waits once for the broker's disk."""

Checkpoint = Callable[[str, str], None]
"""Called with ``(queue, step)`` as the upgrade passes each point where it could crash:
``"out"`` (a batch is in the holding queue, not yet acknowledged from the queue),
``"deleted"`` (the queue is gone, not yet declared again), ``"back"`` (a batch is back
in the queue, not yet acknowledged from the holding queue), ``"restored"`` (every
message is back, the holding queue not yet deleted)."""


@dataclass(frozen=True, slots=True)
class QueueUpgrade:
    """What the upgrade did to one queue."""

    queue: str
    upgraded: bool
    """The queue had no priorities, or an earlier run stopped part way; it has them now."""
    moved: int
    """Messages put back in the queue with their priorities."""
    exists: bool = True
    """False for a queue not declared yet (the first worker or publish declares it with
    priorities)."""


def holding_queue(name: str) -> str:
    """Where the messages of queue ``name`` wait while it is declared again."""
    return f"{name}{HOLDING_SUFFIX}"


def upgrade_queues(
    settings: Settings,
    names: Sequence[str],
    *,
    batch: int = BATCH,
    checkpoint: Checkpoint | None = None,
) -> list[QueueUpgrade]:
    """Give each job queue of ``names`` (already prefixed) priorities, keeping its messages.

    The workers consuming them must be stopped first. Safe to run again after any
    failure or crash: it finishes what the last run began.

    :raises BrokerUnavailableError: the broker is unreachable, did not confirm a move in
        time, or a queue still has consumers.
    :raises StoreUnavailableError: Redis, which holds the jobs' priorities, did not answer.
    """
    keys = Keys(settings.prefix)
    client = connect_redis(settings)
    try:
        with broker_connection(settings, connect_timeout=settings.publish_timeout_seconds) as conn:
            connect_to_broker(conn, timeout=settings.publish_timeout_seconds)
            upgrader = _Upgrader(
                conn,
                keys,
                QueueKind.from_settings(settings),
                _Priorities(client, keys),
                batch=batch,
                timeout=settings.publish_timeout_seconds,
                checkpoint=checkpoint or _no_checkpoint,
            )
            return [upgrader.upgrade(name) for name in names]
    except (AMQPError, OSError) as exc:
        raise BrokerUnavailableError(
            f"the queue upgrade stopped: {type(exc).__name__}: {exc}; run it again to finish"
        ) from exc
    except redis.RedisError as exc:
        raise StoreUnavailableError(
            f"the queue upgrade could not read the jobs' priorities: {exc}; run it again"
        ) from exc
    finally:
        client.close()


def _no_checkpoint(queue: str, step: str) -> None:
    return None


@dataclass
class _Priorities:
    """The priority of each job whose message is moved back, from its hash in Redis."""

    client: redis.Redis
    keys: Keys

    def of(self, messages: Sequence[Any]) -> list[int]:
        job_ids = [_job_id(message) for message in messages]
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            if job_id is not None:
                pipe.hmget(self.keys.job(job_id), ["state", "priority"])
        stored = iter(pipe.execute())
        priorities = []
        for message, job_id in zip(messages, job_ids, strict=True):
            state, priority = next(stored) if job_id is not None else (None, None)
            if state is None:
                # Not a job's message, or its job is gone (the worker drops the message):
                # it keeps the priority it came with.
                priority = message.properties.get("priority")
            priorities.append(min(max(int(priority or 0), 0), MAX_PRIORITY))
        return priorities


def _job_id(message: Any) -> str | None:
    """The job id of a job message (Celery's body ``[[job_id, attempt], {}, {...}]``)."""
    try:
        body = json.loads(message.body)
        job_id = body[0][0]
    except (ValueError, TypeError, LookupError):
        return None
    return job_id if isinstance(job_id, str) else None


@dataclass(eq=False)
class _Upgrader:
    connection: Connection
    keys: Keys
    kind: QueueKind
    """How the queues are to be declared: what the upgrade makes them."""
    priorities: _Priorities
    batch: int
    timeout: float
    checkpoint: Checkpoint
    _channel: Any = field(default=None, init=False)
    _sent: int = field(default=0, init=False)
    """Publish sequence number of the channel's last message (they count from 1)."""
    _waiting: set[int] = field(default_factory=set, init=False)
    """Sequence numbers the broker has not confirmed yet."""
    _failed: str | None = field(default=None, init=False)

    def upgrade(self, name: str) -> QueueUpgrade:
        holding = holding_queue(name)
        exists = self._exists(name)
        # Declared otherwise than the settings say: without priorities by an earlier
        # release, or as the other queue type.
        found = queue_for(self.connection, self.keys, name, kind=self.kind) if exists else None
        legacy = found is not None and queue_warning(found, self.kind) is not None
        if not legacy and not self._exists(holding):
            return QueueUpgrade(name, upgraded=False, moved=0, exists=exists)
        if legacy:
            self._empty_and_delete(name, holding)
            self.checkpoint(name, "deleted")
        try:
            job_queue(self.keys, name, kind=self.kind)(self.channel).declare()
        except PreconditionFailed as exc:
            self._reopen()
            raise BrokerUnavailableError(
                f"queue {name} was declared again without priorities while it was upgraded: "
                "stop every worker and API of the earlier release, then run the upgrade again"
            ) from exc
        moved = 0
        while True:
            moved += self._move(holding, self.keys.exchange, name, step="back")
            self.checkpoint(name, "restored")
            if self._delete(holding):
                return QueueUpgrade(name, upgraded=True, moved=moved)

    @property
    def channel(self) -> Any:
        """A confirm-mode channel, opened again after the broker closed one (a refusal)."""
        if self._channel is None:
            channel = self.connection.channel()
            channel.auto_decode = False  # bodies move as the bytes they are
            channel.confirm_select()
            channel.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple))
            channel.events["basic_nack"].add(lambda tag, multiple: self._refuse("nack"))
            channel.events["basic_return"].add(lambda *returned: self._refuse("returned"))
            self._channel = channel
            self._sent = 0
            self._waiting = set()
            self._failed = None
        return self._channel

    def _reopen(self) -> None:
        """After a refusal: the broker closed the channel (the library reopens it, but not
        in confirm mode), so the next step starts on a new one."""
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(AMQPError, OSError):
                channel.close()

    def _exists(self, name: str) -> bool:
        try:
            self.channel.queue_declare(name, passive=True)
        except NotFound:
            self._reopen()
            return False
        return True

    def _consumers(self, name: str) -> int:
        return int(self.channel.queue_declare(name, passive=True).consumer_count)

    def _empty_and_delete(self, name: str, holding: str) -> None:
        while True:
            consumers = self._consumers(name)
            if consumers:
                raise BrokerUnavailableError(
                    f"queue {name} has {consumers} consumer(s): stop the workers, then run "
                    "the upgrade again"
                )
            self.channel.queue_declare(holding, durable=True)
            self._move(name, "", holding, step="out")
            if self._delete(name):
                return

    def _delete(self, name: str) -> bool:
        """Delete queue ``name`` if it is empty and unused; False if the broker refused."""
        try:
            self.channel.queue_delete(name, if_unused=True, if_empty=True)
        except PreconditionFailed:
            self._reopen()
            return False
        return True

    def _move(self, source: str, exchange: str, routing_key: str, *, step: str) -> int:
        """Move every message of ``source`` through ``exchange`` (with the job's priority
        when moving back), a batch at a time; returns how many."""
        moved = 0
        while True:
            channel = self.channel
            got: list[Any] = []
            while len(got) < self.batch:
                message = channel.basic_get(source, no_ack=False)
                if message is None:
                    break
                got.append(message)
            if not got:
                return moved
            priorities = self.priorities.of(got) if step == "back" else None
            for index, message in enumerate(got):
                properties = dict(message.properties)
                if priorities is not None:
                    properties["priority"] = priorities[index]
                channel.basic_publish(
                    AmqpMessage(message.body, **properties),
                    exchange=exchange,
                    routing_key=routing_key,
                    mandatory=True,
                )
                self._sent += 1
                self._waiting.add(self._sent)
            self._confirm(source, routing_key)
            self.checkpoint(routing_key if step == "back" else source, step)
            channel.basic_ack(got[-1].delivery_info["delivery_tag"], multiple=True)
            moved += len(got)

    def _confirm(self, source: str, target: str) -> None:
        deadline = time.monotonic() + self.timeout
        while self._waiting and self._failed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.connection.drain_events(timeout=left)
            except TimeoutError:
                break
        if self._failed is not None or self._waiting:
            reason = self._failed or f"not confirmed within {self.timeout:g} s"
            raise BrokerUnavailableError(
                f"moving messages from {source} to {target} failed ({reason}); nothing was "
                "acknowledged: run the upgrade again"
            )

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._waiting = {waiting for waiting in self._waiting if waiting > tag}
        else:
            self._waiting.discard(tag)

    def _refuse(self, reason: str) -> None:
        self._failed = self._failed or f"the broker {reason} a message"
