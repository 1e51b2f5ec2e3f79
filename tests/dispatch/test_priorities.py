"""Priorities on the broker: higher first among a queue's waiting messages, queues of an
earlier release used as they are, and their upgrade losing no message; against the
machine's real RabbitMQ and Redis."""

from __future__ import annotations

import argparse
import json
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from amqp.exceptions import NotFound, PreconditionFailed
from cleanup import delete_broker_objects
from kombu import Connection
from pydantic import BaseModel

from cli import queues as queues_command
from orchestrator_core import BrokerUnavailableError, CancellationToken, JobType
from orchestrator_core.dispatch.broker import (
    UPGRADE_COMMAND,
    has_priorities,
    job_queue,
    queue_for,
    queue_name,
)
from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.dispatch.upgrade import holding_queue, upgrade_queues
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.keys import Keys


class Empty(BaseModel):
    n: int = 0


def noop(payload: Empty, token: CancellationToken) -> None:
    """Does nothing."""


DEMO = JobType(name="t.demo", payload=Empty, execute=noop, max_attempts=2)


class CrashError(Exception):
    """Stands for the upgrade's process dying at a step."""


@pytest.fixture
def queue(broker_settings: Settings) -> Iterator[str]:
    """The demo type's queue (the broker fixture deletes it); its holding queue deleted here."""
    name = queue_name(Keys(broker_settings.prefix), DEMO)
    yield name
    delete_broker_objects(broker_settings.broker_url, broker_settings.prefix, [holding_queue(name)])


def declare_legacy(settings: Settings, name: str) -> None:
    """The queue as an earlier release declared it: without priorities."""
    with Connection(settings.broker_url) as connection:
        job_queue(Keys(settings.prefix), name, priorities=False)(connection.channel()).declare()


def drain(settings: Settings, name: str) -> list[tuple[str, int]]:
    """Take every waiting message of ``name``, in the broker's order: (job id, priority)."""
    taken = []
    with Connection(settings.broker_url) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(name, no_ack=True)) is not None:
            body = json.loads(message.body)
            taken.append((body[0][0], int(message.properties.get("priority") or 0)))
    return taken


def exists(settings: Settings, name: str) -> bool:
    with Connection(settings.broker_url) as connection:
        try:
            connection.channel().queue_declare(name, passive=True)
        except NotFound:
            return False
    return True


def queue_has_priorities(settings: Settings, name: str) -> bool:
    with Connection(settings.broker_url) as connection:
        return has_priorities(queue_for(connection, Keys(settings.prefix), name))


def submit_as_before(
    store: JobStore, publisher: Publisher, settings: Settings, queue: str, count: int
) -> dict[str, int]:
    """Jobs of every priority, their messages in ``queue`` as an earlier release queued
    them (all of priority 0, lowest job first): job id -> priority."""
    submitter = Submitter(store, publisher)
    jobs = [submitter.new_job(DEMO, {"n": n}, priority=n % 10) for n in range(count)]
    jobs.sort(key=lambda job: job.priority)
    result = submitter.submit_here(jobs)
    drain(settings, queue)
    assert (
        publisher.publish_many([Message(job.id, 1, queue) for job in result.jobs]) == [None] * count
    )
    return {job.id: new.priority for job, new in zip(result.jobs, jobs, strict=True)}


def test_higher_priorities_are_delivered_first(
    publisher: Publisher, broker_settings: Settings, queue: str
) -> None:
    low = [Message(str(uuid.uuid4()), 1, queue) for _ in range(20)]
    high = [Message(str(uuid.uuid4()), 1, queue, 9) for _ in range(5)]
    assert publisher.publish_many(low) == [None] * 20
    assert publisher.publish_many(high) == [None] * 5

    taken = drain(broker_settings, queue)

    assert taken[:5] == [(message.job_id, 9) for message in high]
    assert taken[5:] == [(message.job_id, 0) for message in low]


def test_a_queue_without_priorities_keeps_taking_messages_with_one_warning(
    publisher: Publisher,
    broker_settings: Settings,
    queue: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    declare_legacy(broker_settings, queue)
    first = [Message(str(uuid.uuid4()), 1, queue, n % 10) for n in range(10)]
    more = [Message(str(uuid.uuid4()), 1, queue, 9) for _ in range(3)]
    outcomes: list[object] = []

    with caplog.at_level(logging.WARNING, logger="orchestrator_core.dispatch"):
        assert publisher.publish_many(first) == [None] * 10
        # Another thread: a connection of its own, on which the queue is found again.
        other = threading.Thread(target=lambda: outcomes.extend(publisher.publish_many(more)))
        other.start()
        other.join()

    assert outcomes == [None] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert queue in warnings[0]
    assert UPGRADE_COMMAND in warnings[0]
    # First in, first out: the queue was left as it was.
    assert [job_id for job_id, _ in drain(broker_settings, queue)] == [
        message.job_id for message in first + more
    ]
    assert not queue_has_priorities(broker_settings, queue)


def test_the_upgrade_gives_the_queue_priorities_and_keeps_every_message(
    broker_store: JobStore, publisher: Publisher, broker_settings: Settings, queue: str
) -> None:
    declare_legacy(broker_settings, queue)
    jobs = submit_as_before(broker_store, publisher, broker_settings, queue, 23)

    [result] = upgrade_queues(broker_settings, [queue], batch=5)

    assert (result.upgraded, result.moved) == (True, 23)
    assert queue_has_priorities(broker_settings, queue)
    assert not exists(broker_settings, holding_queue(queue))
    taken = drain(broker_settings, queue)
    assert sorted(job_id for job_id, _ in taken) == sorted(jobs)
    # Each message carries its job's priority, and the broker now orders by it.
    assert all(priority == jobs[job_id] for job_id, priority in taken)
    assert [priority for _, priority in taken] == sorted(jobs.values(), reverse=True)
    # Run again: nothing left to do.
    [again] = upgrade_queues(broker_settings, [queue])
    assert (again.upgraded, again.exists) == (False, True)


@pytest.mark.parametrize(
    ("step", "nth"), [("out", 2), ("deleted", 1), ("back", 3), ("restored", 1)]
)
def test_an_upgrade_that_crashed_at_any_step_is_finished_by_running_it_again(
    broker_store: JobStore,
    publisher: Publisher,
    broker_settings: Settings,
    queue: str,
    step: str,
    nth: int,
) -> None:
    declare_legacy(broker_settings, queue)
    jobs = submit_as_before(broker_store, publisher, broker_settings, queue, 23)
    passed: list[str] = []

    def crash_at(name: str, reached: str) -> None:
        assert name == queue
        passed.append(reached)
        if passed.count(step) == nth:
            raise CrashError(f"{reached} #{nth}")

    with pytest.raises(CrashError):
        upgrade_queues(broker_settings, [queue], batch=5, checkpoint=crash_at)
    [result] = upgrade_queues(broker_settings, [queue], batch=5)

    assert result.upgraded
    assert queue_has_priorities(broker_settings, queue)
    assert not exists(broker_settings, holding_queue(queue))
    taken = drain(broker_settings, queue)
    assert {job_id for job_id, _ in taken} == set(jobs)  # none lost; duplicates allowed
    assert all(priority == jobs[job_id] for job_id, priority in taken)
    assert [priority for _, priority in taken] == sorted(
        (priority for _, priority in taken), reverse=True
    )


def test_the_upgrade_refuses_a_queue_that_workers_consume(
    publisher: Publisher, broker_settings: Settings, queue: str
) -> None:
    declare_legacy(broker_settings, queue)
    assert publisher.publish_many([Message(str(uuid.uuid4()), 1, queue)]) == [None]
    with Connection(broker_settings.broker_url) as connection:
        consuming = connection.channel()
        consuming.basic_qos(0, 1, False)
        consuming.basic_consume(queue, callback=lambda message: None)

        with pytest.raises(BrokerUnavailableError, match="stop the workers"):
            upgrade_queues(broker_settings, [queue])

        assert not queue_has_priorities(broker_settings, queue)
    [result] = upgrade_queues(broker_settings, [queue])  # the consumer gone
    assert (result.upgraded, result.moved) == (True, 1)


def test_the_upgrade_command_reports_each_queue(
    broker_store: JobStore,
    publisher: Publisher,
    broker_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = Keys(broker_settings.prefix)
    echo, sleep = keys.queue("demo.echo"), keys.queue("demo.sleep")
    declare_legacy(broker_settings, echo)
    for n in range(3):
        publisher.publish(str(uuid.uuid4()), 1, echo, priority=n)
    monkeypatch.setenv("ORCHESTRATOR_PREFIX", broker_settings.prefix)
    monkeypatch.setenv("ORCHESTRATOR_BROKER_URL", broker_settings.broker_url)
    monkeypatch.setenv("ORCHESTRATOR_PLUGINS", "demo")
    parser = argparse.ArgumentParser(prog="orchestrator")
    queues_command.add_commands(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["queues", "upgrade", "--types", "demo.echo,demo.sleep"])
        assert args.handler(args) == 0

        lines = capsys.readouterr().out.splitlines()
        assert lines == [
            f"{echo}: upgraded, with priorities now; 3 message(s) kept",
            f"{sleep}: not declared yet (it will be, with priorities)",
        ]
        # Jobs unknown to Redis keep the priority their message came with.
        assert [priority for _, priority in drain(broker_settings, echo)] == [2, 1, 0]
        assert not exists(broker_settings, sleep)
    finally:
        delete_broker_objects(broker_settings.broker_url, broker_settings.prefix, [echo, sleep])


def test_declaring_a_queue_with_priorities_over_one_without_is_refused(
    broker_settings: Settings, queue: str
) -> None:
    """Why the probe exists: the broker closes the channel of such a declaration."""
    declare_legacy(broker_settings, queue)
    with (
        Connection(broker_settings.broker_url) as connection,
        pytest.raises(PreconditionFailed, match="x-max-priority"),
    ):
        job_queue(Keys(broker_settings.prefix), queue)(connection.channel()).declare()
