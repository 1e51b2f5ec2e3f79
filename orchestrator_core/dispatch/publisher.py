"""Publishing job messages with the broker's confirm, within a bounded time."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from amqp.exceptions import AMQPError
from amqp.exceptions import ConnectionError as AMQPConnectionError
from celery import Celery
from kombu import Producer, Queue
from kombu.exceptions import KombuError

from orchestrator_core.dispatch.broker import (
    PERSISTENT,
    TASK_NAME,
    dead_letter_queue,
    job_queue,
    make_celery,
)
from orchestrator_core.exceptions import BrokerUnavailableError
from orchestrator_core.settings import Settings
from orchestrator_core.store.keys import Keys

logger = logging.getLogger(__name__)


class Publisher:
    """Sends job messages and waits for the broker's confirm, within a bounded time.

    Each thread publishes on a connection of its own (kombu connections are not
    thread-safe), opened on first use and replaced after any error. A publish that
    fails on a connection the broker dropped while it sat idle is tried once more on
    a fresh one: a duplicate message is harmless, the worker drops it.
    """

    def __init__(self, app: Celery, *, keys: Keys, timeout: float) -> None:
        self.app = app
        self.keys = keys
        self.timeout = timeout
        self._dead_letters = dead_letter_queue(keys)
        self._queues: dict[str, Queue] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Any] = set()

    @classmethod
    def from_settings(cls, settings: Settings, app: Celery | None = None) -> Publisher:
        return cls(
            app or make_celery(settings),
            keys=Keys(settings.prefix),
            timeout=settings.publish_timeout_seconds,
        )

    def publish(self, job_id: str, attempt: int, queue: str) -> None:
        """Queue the message that starts ``attempt`` of the job.

        :raises BrokerUnavailableError: the broker is down, hung, or did not confirm.
        """
        args = [job_id, attempt]
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            str(uuid.uuid4()),
            TASK_NAME,
            args=args,
            ignore_result=True,
            argsrepr=repr(args),  # spares Celery's slower safe repr on the hot path
            kwargsrepr="{}",
        )
        target = self._queues.get(queue)
        if target is None:
            target = self._queues.setdefault(queue, job_queue(self.keys, queue))
        for last_try in (False, True):
            producer = self._producer()
            try:
                producer.publish(
                    body,
                    exchange=target.exchange,
                    routing_key=queue,
                    serializer="json",
                    delivery_mode=PERSISTENT,
                    headers=headers,
                    declare=[self._dead_letters, target],
                    retry=False,
                    timeout=self.timeout,
                    confirm_timeout=self.timeout,
                    **properties,
                )
                return
            except (KombuError, AMQPError, OSError) as exc:
                self._discard()
                if last_try or not _stale_connection(exc):
                    raise BrokerUnavailableError(
                        f"could not queue job {job_id} on {queue}: {type(exc).__name__}: {exc}"
                    ) from exc
                logger.info("broker connection went stale; publishing again on a new one")

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            connection.collect()

    def _producer(self) -> Any:
        producer = getattr(self._local, "producer", None)
        if producer is None:
            # Publishing never reads from the socket, so AMQP heartbeats could not be
            # serviced; keepalive covers a dead peer instead.
            connection = self.app.connection_for_write(heartbeat=0)
            try:
                connection.ensure_connection(max_retries=1, timeout=self.timeout)
            except (KombuError, AMQPError, OSError) as exc:
                connection.collect()
                raise BrokerUnavailableError(
                    f"cannot connect to the broker: {type(exc).__name__}: {exc}"
                ) from exc
            producer = Producer(connection.default_channel)
            self._local.producer = producer
            with self._lock:
                self._connections.add(connection)
        return producer

    def _discard(self) -> None:
        producer = getattr(self._local, "producer", None)
        self._local.producer = None
        if producer is not None:
            connection = producer.connection
            with self._lock:
                self._connections.discard(connection)
            connection.collect()


def _stale_connection(exc: BaseException) -> bool:
    """An error of a connection the broker closed earlier, rather than of this publish."""
    return isinstance(exc, ConnectionError | AMQPConnectionError) and not isinstance(
        exc, TimeoutError
    )
