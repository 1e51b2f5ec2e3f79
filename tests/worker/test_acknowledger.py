"""What the acknowledger does with each message a worker holds, tick by tick.

The requests stand in for Celery's (the attributes ``worker/acknowledger.py`` reads);
Redis and the semaphore are the real ones. ``test_worker_consumer_timeout.py`` runs it
inside real workers on a broker with a short consumer_timeout.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from cleanup import delete_broker_objects
from kombu import Connection
from kombu.asynchronous.semaphore import LaxBoundedSemaphore

from orchestrator_core.dispatch.broker import TASK_NAME
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.keys import Keys
from worker.acknowledger import Acknowledger, Waiters
from worker.message import JobMessage, queue_again

DELAY = 10.0


@dataclass(eq=False)
class Held:
    args: list[object]
    time_start: float | None = None
    name: str = TASK_NAME
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    acknowledged: bool = False
    rejected: list[bool] = field(default_factory=list)
    delivery_info: dict[str, object] | None = None

    def acknowledge(self) -> None:
        self.acknowledged = True

    def reject(self, requeue: bool = False) -> None:
        self.rejected.append(requeue)
        self.acknowledged = True


@pytest.fixture
def acknowledger(redis_client: redis.Redis, settings: Settings) -> Acknowledger:
    return Acknowledger(redis_client, Keys(settings.prefix), delay=DELAY)


def waiting_behind(*requests: Held) -> tuple[LaxBoundedSemaphore, Waiters, list[Held]]:
    """A worker's semaphore with its one process busy and ``requests`` waiting for it, and
    the list of those it hands to a process as one frees (the worker's ``_process_task``)."""
    semaphore = LaxBoundedSemaphore(1)
    semaphore.acquire(lambda: None)
    started: list[Held] = []
    for request in requests:
        semaphore.acquire(started.append, request)
    return semaphore, semaphore._waiting, started


def test_a_message_held_less_than_the_delay_costs_no_redis_call(
    settings: Settings, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis is unreachable: any call would be logged as a warning.
    unreachable = connect_redis(load_settings(redis_url=f"redis://127.0.0.1:{closed_port}/0"))
    acknowledger = Acknowledger(unreachable, Keys(settings.prefix), delay=DELAY)
    running = Held([str(uuid.uuid4()), 1], time_start=1.0)
    with caplog.at_level(logging.WARNING, logger="worker.acknowledger"):
        acknowledger.tick([running], None, now=100.0)
        acknowledger.tick([running], None, now=100.0 + DELAY - 0.1)
        assert caplog.records == []
        acknowledger.tick([running], None, now=100.0 + DELAY)
    assert not running.acknowledged
    assert "not acknowledged yet" in caplog.text
    unreachable.close()


def test_a_message_is_acknowledged_once_its_attempt_has_started(
    acknowledger: Acknowledger, store: JobStore
) -> None:
    job = store.create("demo.sleep", {"seconds": 60}, max_attempts=3)
    request = Held([job.id, 1], time_start=1.0)
    acknowledger.tick([request], None, now=0.0)
    acknowledger.tick([request], None, now=DELAY)
    assert not request.acknowledged, "the job is still CREATED: the message is all it has"

    assert store.start(job.id, 1, "worker:1:abc").started
    acknowledger.tick([request], None, now=DELAY + 1)
    assert request.acknowledged
    assert request.rejected == []


def test_a_message_for_a_later_attempt_waits_for_that_attempt(
    acknowledger: Acknowledger, store: JobStore
) -> None:
    job = store.create("demo.sleep", {"seconds": 60}, max_attempts=3)
    assert store.start(job.id, 1, "worker:1:abc").started
    retry = Held([job.id, 2], time_start=1.0)
    acknowledger.tick([retry], None, now=0.0)
    acknowledger.tick([retry], None, now=DELAY)
    assert not retry.acknowledged


def test_the_message_of_a_job_that_is_gone_is_acknowledged(acknowledger: Acknowledger) -> None:
    request = Held([str(uuid.uuid4()), 1], time_start=1.0)
    acknowledger.tick([request], None, now=0.0)
    acknowledger.tick([request], None, now=DELAY)
    assert request.acknowledged


def test_messages_that_are_not_ours_are_left_to_the_task(acknowledger: Acknowledger) -> None:
    others = [
        Held(["not-a-uuid", 1], time_start=1.0),
        Held([str(uuid.uuid4()), 0], time_start=1.0),
        Held([12345, "many", "args"], time_start=1.0),
        Held([str(uuid.uuid4()), 1], time_start=1.0, name="somebody.elses_task"),
    ]
    acknowledger.tick(others, None, now=0.0)
    acknowledger.tick(others, None, now=DELAY)
    assert [request.acknowledged for request in others] == [False] * 4


def test_a_message_waiting_for_a_free_process_goes_back_to_the_queue(
    acknowledger: Acknowledger, store: JobStore
) -> None:
    job = store.create("demo.echo", {"message": "behind"}, max_attempts=3)
    older, newer = Held([job.id, 1]), Held([str(uuid.uuid4()), 1])
    semaphore, waiters, started = waiting_behind(older, newer)
    acknowledger.tick([older], waiters, now=0.0)
    acknowledger.tick([older, newer], waiters, now=DELAY)

    assert older.rejected == [True], "given back to the queue, not dropped"
    assert newer.rejected == []
    assert [entry[1] for entry in waiters] == [(newer,)]
    semaphore.release()
    assert started == [newer], "the process freed runs the next one, not the one given back"


def test_a_message_on_its_way_into_a_process_is_left_alone(acknowledger: Acknowledger) -> None:
    # Reserved, not accepted yet, and no longer among the waiters: it is being written to a
    # pool process, which accepts it in a moment.
    request = Held([str(uuid.uuid4()), 1])
    _, waiters, _ = waiting_behind()
    acknowledger.tick([request], waiters, now=0.0)
    acknowledger.tick([request], waiters, now=DELAY)
    assert request.rejected == []
    assert not request.acknowledged


@dataclass(eq=False)
class Delivered(Held):
    """A request holding a real, unacknowledged delivery of a quorum queue."""

    channel: Any = None
    tag: int = 0

    def acknowledge(self) -> None:
        self.channel.basic_ack(self.tag)
        super().acknowledge()

    def reject(self, requeue: bool = False) -> None:
        self.channel.basic_reject(self.tag, requeue=requeue)
        super().reject(requeue)


@pytest.fixture
def quorum(settings: Settings) -> Iterator[tuple[Settings, str]]:
    """Settings for quorum queues that dead-letter a message requeued more than once, on
    the machine's RabbitMQ, and the name of a queue of theirs."""
    configured = settings.model_copy(update={"queue_type": "quorum", "queue_delivery_limit": 1})
    queue = Keys(settings.prefix).queue("t.giveback")
    yield configured, queue
    delete_broker_objects(configured.broker_url, configured.prefix, [queue])


def test_a_message_given_back_is_a_fresh_copy_which_a_quorum_queue_never_dead_letters(
    quorum: tuple[Settings, str], redis_client: redis.Redis, store: JobStore
) -> None:
    settings, queue = quorum
    job = store.create("demo.echo", {"message": "behind"}, max_attempts=3)
    publisher = Publisher.from_settings(settings)
    acknowledger = Acknowledger(
        redis_client,
        Keys(settings.prefix),
        delay=DELAY,
        requeue=lambda delivery, message: queue_again(publisher, delivery, message),
    )
    try:
        publisher.publish(job.id, 1, queue)
        with Connection(settings.broker_url) as connection:
            channel = connection.channel()
            # Given back three times, past the limit of one requeue: each time a new copy.
            for turn in range(4):
                message = channel.basic_get(queue)
                assert message is not None, f"turn {turn}: the job's message is gone"
                assert (message.headers or {}).get("x-delivery-count", 0) == 0, message.headers
                if turn == 3:
                    channel.basic_ack(message.delivery_tag)
                    break
                request = Delivered(
                    [job.id, 1],
                    delivery_info={"routing_key": queue, "priority": 0},
                    channel=channel,
                    tag=message.delivery_tag,
                )
                _, waiters, _ = waiting_behind(request)
                acknowledger.tick([request], waiters, now=0.0)
                acknowledger.tick([request], waiters, now=DELAY)
                assert request.acknowledged
                assert request.rejected == [], "acknowledged once its copy was confirmed"
            dead_letters = channel.queue_declare(
                Keys(settings.prefix).dead_letter_queue, passive=True
            )
            assert dead_letters.message_count == 0
            assert channel.queue_declare(queue, passive=True).message_count == 0
    finally:
        publisher.close()


def test_a_message_whose_copy_is_not_confirmed_is_requeued(store: JobStore) -> None:
    copies: list[tuple[object, JobMessage]] = []

    def unconfirmed(delivery: object, message: JobMessage) -> bool:
        copies.append((delivery, message))
        return False

    job = store.create("demo.echo", {"message": "behind"}, max_attempts=3)
    acknowledger = Acknowledger(store.redis, store.keys, delay=DELAY, requeue=unconfirmed)
    request = Held([job.id, 1], delivery_info={"routing_key": "q"})
    _, waiters, _ = waiting_behind(request)
    acknowledger.tick([request], waiters, now=0.0)
    acknowledger.tick([request], waiters, now=DELAY)
    assert copies == [({"routing_key": "q"}, JobMessage(job.id, 1))]
    assert request.rejected == [True]
