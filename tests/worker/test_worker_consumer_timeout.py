"""Jobs that run longer than the broker's consumer_timeout, on a RabbitMQ node of our own
whose timeout is 5 s (the machine's keeps RabbitMQ's 30 minutes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import RabbitNode
from cleanup import delete_broker_objects, job_queues
from harness import ALLOWED, Jobs, Workers

from orchestrator_core import State, load_plugins
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore

CONSUMER_TIMEOUT_MS = 5000
LONG_JOB_SECONDS = 3 * CONSUMER_TIMEOUT_MS / 1000
EARLY_ACK_SECONDS = 1.0
LEASE_SECONDS = 5.0
"""Longer than the other worker tests' second: on a busy machine a renewal a second late
would have the sweep publish the job again, which is not what these tests are about."""
CHANNEL_TROUBLE = ("PRECONDITION_FAILED", "consumer_timeout", "Connection to broker lost")
"""What a worker logs when the broker closes its channel over an unacknowledged delivery."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    rabbit = RabbitNode(
        tmp_path_factory.mktemp("rabbit"),
        consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
        channel_tick_ms=500,
    )
    rabbit.start()
    yield rabbit
    rabbit.stop()


@pytest.fixture
def node_settings(worker_settings: Settings, node: RabbitNode) -> Iterator[Settings]:
    configured = worker_settings.model_copy(
        update={
            "broker_url": node.url,
            "early_ack_seconds": EARLY_ACK_SECONDS,
            "lease_seconds": LEASE_SECONDS,
        }
    )
    yield configured
    queues = job_queues(configured.prefix, load_plugins(allow=list(ALLOWED)))
    delete_broker_objects(configured.broker_url, configured.prefix, queues)


@pytest.fixture
def workers(node_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(node_settings, tmp_path)
    yield pool
    pool.stop_all()
    for worker in pool.started:
        print(f"--- {worker.log.name}\n{worker.text()[-6000:]}")


@pytest.fixture
def jobs(node_settings: Settings) -> Iterator[Jobs]:
    publisher = Publisher.from_settings(node_settings)
    yield Jobs(JobStore.from_settings(node_settings), publisher, load_plugins(allow=list(ALLOWED)))
    publisher.close()


def test_a_job_longer_than_the_consumer_timeout_runs_once_on_its_first_worker(
    workers: Workers, jobs: Jobs, node: RabbitNode
) -> None:
    worker = workers.start()
    job = jobs.submit("demo.sleep", {"seconds": LONG_JOB_SECONDS, "steps": 15})
    done = jobs.wait(job.id, State.COMPLETED, timeout=LONG_JOB_SECONDS + 30)

    assert done.attempts == 1
    assert [(h.state, h.attempt) for h in done.history] == [
        (State.CREATED, 0),
        (State.RUNNING, 1),
        (State.COMPLETED, 1),
    ]
    log = worker.text()
    for trouble in CHANNEL_TROUBLE:
        assert trouble not in log
    assert "dropping message" not in log, "the message was delivered again"
    assert f"job {job.id} attempt 1: message acknowledged after 1s" in log
    assert node.queue_counts(f"{jobs.store.keys.prefix}.demo.sleep") == (0, 0)


def test_a_worker_killed_after_the_early_ack_loses_no_job(
    workers: Workers, jobs: Jobs, node: RabbitNode
) -> None:
    first = workers.start()
    job = jobs.submit("demo.sleep", {"seconds": 4, "steps": 8})
    queue = f"{jobs.store.keys.prefix}.demo.sleep"
    deadline = time.monotonic() + 20
    while node.queue_counts(queue) != (0, 0) or jobs.store.get(job.id).state is not State.RUNNING:
        assert time.monotonic() < deadline, "the running job's message was never acknowledged"
        time.sleep(0.2)
    assert f"job {job.id} attempt 1: message acknowledged" in first.text()

    first.kill()
    # The broker has nothing to deliver again: the lease and the sweep must bring it back.
    assert node.queue_counts(queue) == (0, 0)
    workers.start()
    done = jobs.wait(job.id, State.COMPLETED, timeout=40)
    assert done.attempts == 2
    assert [(h.state, h.attempt, h.reason) for h in done.history] == [
        (State.CREATED, 0, None),
        (State.RUNNING, 1, None),
        (State.RETRYING, 1, "worker lost"),
        (State.RUNNING, 2, None),
        (State.COMPLETED, 2, None),
    ]
    assert node.queue_counts(queue) == (0, 0)


def test_a_message_waiting_behind_a_long_job_goes_back_to_the_queue_for_an_idle_worker(
    workers: Workers, jobs: Jobs, node: RabbitNode
) -> None:
    busy = workers.start(concurrency=1)
    long = jobs.submit("demo.sleep", {"seconds": LONG_JOB_SECONDS, "steps": 15})
    jobs.wait(long.id, State.RUNNING)
    waiting = jobs.submit("demo.echo", {"message": "behind"})
    deadline = time.monotonic() + 10
    while f"job {waiting.id}: message given back to the queue" not in busy.text():
        assert time.monotonic() < deadline, "the waiting message was never given back"
        time.sleep(0.05)

    workers.start(concurrency=1, types="demo.echo")
    done = jobs.wait(waiting.id, State.COMPLETED, timeout=LONG_JOB_SECONDS)
    assert jobs.store.get(long.id).state is State.RUNNING, "it waited for the long job"
    assert done.attempts == 1
    finished = jobs.wait(long.id, State.COMPLETED, timeout=LONG_JOB_SECONDS + 30)
    assert finished.attempts == 1
    log = busy.text()
    for trouble in CHANNEL_TROUBLE:
        assert trouble not in log
    prefix = jobs.store.keys.prefix
    assert node.queue_counts(f"{prefix}.demo.echo") == (0, 0)
    assert node.queue_counts(f"{prefix}.demo.sleep") == (0, 0)
