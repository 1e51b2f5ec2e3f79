"""Publishing job messages with the broker's confirm, many at a time, within a bounded time.

A confirm waited for message by message costs a round trip to the broker (and its
disk) per job. Here every message of a batch is sent first and the confirms are
awaited together, as RabbitMQ sends them: one ``basic.ack`` may cover many messages.
Messages are published ``mandatory``, so one that no queue would take comes back
(``basic.return``) and counts as failed instead of vanishing. Each carries its job's
priority; a queue without priorities (a quorum queue, or a classic one of an earlier
release) still takes them, in order of arrival.

With several brokers, a connection goes to the first that answers; when it breaks, the
messages it had not confirmed are sent once more on a new one (to the next broker that
answers), and those that were confirmed stay so: a message counts as queued only once a
broker confirmed it, never because the connection it was sent on went away.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from amqp.exceptions import AMQPError
from amqp.exceptions import ConnectionError as AMQPConnectionError
from celery import Celery
from kombu import Queue
from kombu.exceptions import KombuError
from kombu.serialization import dumps

from orchestrator_core.dispatch.broker import (
    PERSISTENT,
    TASK_NAME,
    QueueKind,
    connect_to_broker,
    declare_dead_letters,
    make_celery,
    queue_for,
    queue_kind,
    queue_warning,
)
from orchestrator_core.dispatch.frames import ID_LENGTH, FrameTemplate, serialized
from orchestrator_core.exceptions import BrokerUnavailableError
from orchestrator_core.settings import Settings
from orchestrator_core.store.keys import Keys

logger = logging.getLogger(__name__)

Outcome = BrokerUnavailableError | None
"""What became of one message: None once the broker confirmed it, else why not."""

_PENDING: Any = object()
"""The outcome of a message sent and not yet confirmed."""


@dataclass(frozen=True, slots=True)
class Message:
    """The message that starts ``attempt`` of job ``job_id``, for ``queue``."""

    job_id: str
    attempt: int
    queue: str
    priority: int = 0
    """0..9: the broker delivers higher first among the queue's waiting messages."""


@dataclass(eq=False)
class _Channel:
    """One thread's connection and confirm-mode channel, and what they are waiting for."""

    connection: Any
    channel: Any
    sent: int = 0
    """Delivery tag of the last message sent on the channel (tags count from 1)."""
    waiting: dict[int, int] = field(default_factory=dict)
    """Delivery tag -> index in the batch being sent, until confirmed."""
    by_task: dict[str, int] = field(default_factory=dict)
    """Task id -> index in the batch, to place a returned message."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Per message of the batch: None once confirmed, an error, or ``_PENDING``."""
    declared: dict[str, Queue] = field(default_factory=dict)
    """Queue name -> the queue as declared on this connection."""
    dead_letters: bool = False
    """Whether the dead letters were declared on this connection."""

    def settle(self, tag: int, multiple: bool, error: BrokerUnavailableError | None) -> None:
        tags = [t for t in self.waiting if t <= tag] if multiple else [tag]
        for each in tags:
            index = self.waiting.pop(each, None)
            # A returned message keeps its error: the broker confirms it all the same.
            if index is not None and self.outcomes[index] is _PENDING:
                self.outcomes[index] = error


class Publisher:
    """Sends job messages and waits for the broker's confirms, within a bounded time.

    Each thread publishes on a connection of its own (kombu connections are not
    thread-safe), opened on first use and replaced after any error. The messages of a
    batch that a connection lost before the broker confirmed them (the broker dropped
    it while it sat idle, or went down) are sent once more on a fresh one: a duplicate
    message is harmless, the worker drops it.

    :param kind: how queues are declared (default: as ``app`` says).
    """

    def __init__(
        self, app: Celery, *, keys: Keys, timeout: float, kind: QueueKind | None = None
    ) -> None:
        self.app = app
        self.keys = keys
        self.timeout = timeout
        self.kind = kind or queue_kind(app)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._templates: dict[tuple[int, int], FrameTemplate | None] = {}
        self._warned: set[str] = set()
        """Queues found other than ``kind`` says (and warned of)."""

    @classmethod
    def from_settings(cls, settings: Settings, app: Celery | None = None) -> Publisher:
        return cls(
            app or make_celery(settings),
            keys=Keys(settings.prefix),
            timeout=settings.publish_timeout_seconds,
            kind=QueueKind.from_settings(settings),
        )

    def publish(self, job_id: str, attempt: int, queue: str, *, priority: int = 0) -> None:
        """Queue the message that starts ``attempt`` of the job.

        :raises BrokerUnavailableError: the broker is down, hung, or did not confirm.
        """
        [error] = self.publish_many([Message(job_id, attempt, queue, priority)])
        if error is not None:
            raise error

    def publish_many(self, messages: Sequence[Message]) -> list[Outcome]:
        """Queue every message; the broker's confirms of all of them are awaited together,
        for at most the publish timeout.

        :return: per message, None once a broker confirmed it, else why not (refused,
            returned as unroutable, not confirmed in time, or no broker reachable);
            a message not confirmed may still have been queued.
        """
        outcomes: list[Outcome] = [_PENDING] * len(messages)
        for last_try in (False, True):
            pending = [index for index, outcome in enumerate(outcomes) if outcome is _PENDING]
            if not pending:
                break
            try:
                state = self._channel()
            except BrokerUnavailableError as exc:
                return [exc if outcome is _PENDING else outcome for outcome in outcomes]
            try:
                sent = self._send(state, [messages[index] for index in pending])
            except (KombuError, AMQPError, OSError) as exc:
                # What the broker settled before the connection failed stays settled.
                for index, outcome in zip(pending, state.outcomes, strict=False):
                    outcomes[index] = outcome
                self._drop()
                if not last_try and _connection_lost(exc):
                    logger.info(
                        "broker connection lost (%s: %s); publishing %d unconfirmed "
                        "message(s) again on a new one",
                        type(exc).__name__,
                        exc,
                        sum(outcome is _PENDING for outcome in outcomes),
                    )
                    continue
                unsent = sum(outcome is _PENDING for outcome in outcomes)
                error = BrokerUnavailableError(
                    f"could not queue {unsent} message(s): {type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                return [error if outcome is _PENDING else outcome for outcome in outcomes]
            for index, outcome in zip(pending, sent, strict=True):
                outcomes[index] = outcome
            break
        return outcomes

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            connection.collect()

    def _send(self, state: _Channel, messages: Sequence[Message]) -> list[Outcome]:
        channel = state.channel
        state.outcomes = [_PENDING] * len(messages)
        state.waiting.clear()
        state.by_task.clear()
        frames: list[bytes] = []
        for index, message in enumerate(messages):
            target = state.declared.get(message.queue)
            if target is None:
                self._write(state, frames)  # what came before goes first
                target = self._declare(state, message.queue)
            task_id = str(uuid.uuid4())
            template = self._template(channel, message.attempt, message.priority)
            if template is not None and len(message.job_id) == ID_LENGTH:
                frames.append(
                    template.frames(
                        channel.channel_id,
                        target.exchange.name,
                        message.queue,
                        task_id,
                        message.job_id,
                    )
                )
            else:
                self._write(state, frames)
                channel.basic_publish(
                    self._amqp_message(channel, message, task_id),
                    exchange=target.exchange.name,
                    routing_key=message.queue,
                    mandatory=True,
                )
            state.sent += 1
            state.waiting[state.sent] = index
            state.by_task[task_id] = index
        self._write(state, frames)
        deadline = time.monotonic() + self.timeout
        while state.waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                state.connection.drain_events(timeout=left)
            except TimeoutError:
                break
        outcomes: list[Outcome] = []
        for index, outcome in enumerate(state.outcomes):
            if outcome is _PENDING:
                job_id = messages[index].job_id
                outcome = BrokerUnavailableError(
                    f"the broker did not confirm the message of job {job_id} "
                    f"within {self.timeout:g} s"
                )
            outcomes.append(outcome)
        if state.waiting:
            # Confirms still owed would settle the next batch's tags: start afresh.
            self._drop()
        return outcomes

    def _declare(self, state: _Channel, name: str) -> Queue:
        """Declare the queue ``name`` (and, first, the dead letters) on the channel's
        connection: as ``kind`` says, or as it exists."""
        if not state.dead_letters:
            declare_dead_letters(state.connection, self.keys, kind=self.kind)
            state.dead_letters = True
        target: Queue = queue_for(state.connection, self.keys, name, kind=self.kind)
        warning = queue_warning(target, self.kind)
        if warning is not None:
            with self._lock:
                first = name not in self._warned
                self._warned.add(name)
            if first:
                logger.warning("%s", warning)
        state.declared[name] = target
        return target

    def _template(self, channel: Any, attempt: int, priority: int) -> FrameTemplate | None:
        """The frame template of messages for ``attempt`` at ``priority``; None where one
        cannot be made, and the library encodes each message itself."""
        key = (attempt, priority)
        if key not in self._templates:

            def encode(task_id: str, job_id: str) -> tuple[bytes, bytes]:
                message = Message(job_id, attempt, "", priority)
                return serialized(self._amqp_message(channel, message, task_id))

            try:
                self._templates[key] = FrameTemplate(
                    encode, sample_task=str(uuid.uuid4()), sample_job=str(uuid.uuid4())
                )
            except ValueError:
                logger.warning(
                    "messages of attempt %d, priority %d are encoded one by one", attempt, priority
                )
                self._templates[key] = None
        return self._templates[key]

    @staticmethod
    def _write(state: _Channel, frames: list[bytes]) -> None:
        if frames:
            state.connection.connection.transport.write(b"".join(frames))
            frames.clear()

    def _amqp_message(self, channel: Any, message: Message, task_id: str) -> Any:
        args = [message.job_id, message.attempt]
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            task_id,
            TASK_NAME,
            args=args,
            ignore_result=True,
            argsrepr=repr(args),  # spares Celery's slower safe repr on the hot path
            kwargsrepr="{}",
        )
        content_type, content_encoding, data = dumps(body, serializer="json")
        properties = {**properties, "delivery_mode": PERSISTENT}
        return channel.prepare_message(
            data, message.priority, content_type, content_encoding, headers, properties
        )

    def _channel(self) -> _Channel:
        state: _Channel | None = getattr(self._local, "state", None)
        if state is not None:
            return state
        # Publishing never reads from the socket but for confirms, so AMQP heartbeats
        # could not be serviced; keepalive covers a dead peer instead. Confirms are
        # awaited here, not by the transport one message at a time.
        connection = self.app.connection_for_write(
            heartbeat=0, transport_options={"confirm_publish": False}
        )
        try:
            connect_to_broker(connection, timeout=self.timeout)
            channel = connection.default_channel
            channel.confirm_select()
        except BrokerUnavailableError:
            connection.collect()
            raise
        except (KombuError, AMQPError, OSError) as exc:
            connection.collect()
            raise BrokerUnavailableError(
                f"cannot connect to the broker {connection.host}: {type(exc).__name__}: {exc}"
            ) from exc
        state = _Channel(connection, channel)
        channel.events["basic_ack"].add(lambda tag, multiple: state.settle(tag, multiple, None))
        channel.events["basic_nack"].add(
            lambda tag, multiple: state.settle(
                tag, multiple, BrokerUnavailableError("the broker refused the message (nack)")
            )
        )
        channel.events["basic_return"].add(lambda *returned: _returned(state, *returned))
        self._local.state = state
        with self._lock:
            self._connections.add(connection)
        return state

    def _drop(self) -> None:
        state: _Channel | None = getattr(self._local, "state", None)
        self._local.state = None
        if state is not None:
            with self._lock:
                self._connections.discard(state.connection)
            state.connection.collect()


def _returned(
    state: _Channel, exc: Exception, exchange: str, routing_key: str, message: Any
) -> None:
    """A message no queue took: its confirm still comes, but it was not queued."""
    task_id = (message.properties.get("application_headers") or {}).get("id") or (
        message.properties.get("correlation_id")
    )
    index = state.by_task.get(str(task_id))
    if index is not None and state.outcomes[index] is _PENDING:
        state.outcomes[index] = BrokerUnavailableError(
            f"the broker could not route the message to {routing_key}: {exc}"
        )
    state.declared.pop(routing_key, None)  # declared again with the next message for it


def _connection_lost(exc: BaseException) -> bool:
    """An error of the connection (the broker closed it, earlier or now, or went away),
    rather than of this publish, which another connection may well carry."""
    return isinstance(exc, ConnectionError | AMQPConnectionError) and not isinstance(
        exc, TimeoutError
    )
