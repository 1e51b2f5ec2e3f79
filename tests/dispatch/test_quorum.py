"""Quorum queues and several broker URLs, on a three-node RabbitMQ cluster of the module's
own (started once) and the machine's Redis: queues replicated on every node, the
delivery limit, queues declared otherwise used as they are, and publishers and workers
that carry on when the node they were connected to stops."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, job_queues
from kombu import Connection
from processes import free_port, stop_group
from rabbitcluster import RabbitCluster

from api.readiness import BrokerProbe
from orchestrator_core import BrokerUnavailableError, State, load_plugins
from orchestrator_core.dispatch.broker import (
    CLASSIC,
    QueueKind,
    consumed_queues,
    job_queue,
    make_celery,
    queue_type,
)
from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.keys import Keys

TESTS = Path(__file__).resolve().parent.parent
# The API server and the worker processes are run exactly as their own suites run them.
for shared in (TESTS / "api", TESTS / "worker"):
    if str(shared) not in sys.path:
        sys.path.append(str(shared))

from apiserver import serve  # noqa: E402
from harness import ALLOWED, FIXTURES, ORCHESTRATOR, Jobs, Workers  # noqa: E402

# Booting and joining three nodes on a busy machine takes most of a minute.
pytestmark = pytest.mark.timeout(400)

DELIVERY_LIMIT = 3
CONCURRENCY = 2
PREFETCH_MULTIPLIER = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    rabbits = RabbitCluster(tmp_path_factory.mktemp("cluster"))
    rabbits.start()
    yield rabbits
    rabbits.stop()


@pytest.fixture
def quorum_settings(
    settings: Settings,
    redis_client: redis.Redis,
    cluster: RabbitCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Settings]:
    """Quorum queues, every node of the cluster as a broker URL; afterwards, any node the
    test stopped is started again and the test's queues are deleted."""
    monkeypatch.syspath_prepend(str(FIXTURES))  # the worker tests' job types, for clean-up
    configured = load_settings(
        prefix=settings.prefix,
        broker_url=cluster.url,
        queue_type="quorum",
        queue_delivery_limit=DELIVERY_LIMIT,
        publish_timeout_seconds=2.0,
        prefetch_multiplier=PREFETCH_MULTIPLIER,
        lease_seconds=5.0,
        sweep_interval_seconds=0.2,
        plugins=",".join(ALLOWED),
    )
    yield configured
    cluster.heal()
    plugins = load_plugins(allow=list(ALLOWED))
    queues = [demo_queue(configured), *job_queues(configured.prefix, plugins)]
    delete_broker_objects(cluster.first.url, configured.prefix, queues)


def demo_queue(settings: Settings) -> str:
    return Keys(settings.prefix).queue("t.demo")


@dataclass
class QuorumWorkers(Workers):
    """Worker processes given the queue settings too."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            ORCHESTRATOR_QUEUE_TYPE=self.settings.queue_type,
            ORCHESTRATOR_QUEUE_DELIVERY_LIMIT=str(self.settings.queue_delivery_limit),
            ORCHESTRATOR_PUBLISH_TIMEOUT_SECONDS=str(self.settings.publish_timeout_seconds),
            ORCHESTRATOR_PREFETCH_MULTIPLIER=str(self.settings.prefetch_multiplier),
        )
        return env


def take(url: str, queue: str, *, timeout: float = 5.0) -> Any:
    """The next message of ``queue``, acknowledged; None if none comes within ``timeout``."""
    with Connection(url) as connection:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while (message := channel.basic_get(queue, no_ack=True)) is None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return message


def job_id_of(message: Any) -> str:
    return str(json.loads(message.body)[0][0])


def waiting(url: str, queue: str) -> int:
    with Connection(url) as connection:
        return int(connection.default_channel.queue_declare(queue, passive=True).message_count)


def test_job_queues_and_dead_letters_are_quorum_queues_on_every_node(
    quorum_settings: Settings, cluster: RabbitCluster
) -> None:
    queue = demo_queue(quorum_settings)
    job_id = str(uuid.uuid4())
    publisher = Publisher.from_settings(quorum_settings)
    try:
        publisher.publish(job_id, 1, queue, priority=7)  # a priority the queue ignores
    finally:
        publisher.close()

    found = cluster.queues("type", "members", "arguments")
    every_node = {node.name for node in cluster.nodes}
    for name in (queue, Keys(quorum_settings.prefix).dead_letter_queue):
        assert found[name]["type"] == "quorum"
        assert set(found[name]["members"]) == every_node
    assert "x-max-priority" not in json.dumps(found[queue]["arguments"])
    message = take(cluster.urls[2], queue)
    assert message is not None, "the message never reached a consumer on another node"
    assert job_id_of(message) == job_id


def test_a_message_is_dead_lettered_once_delivered_the_limit_of_times_more(
    quorum_settings: Settings, cluster: RabbitCluster
) -> None:
    queue = demo_queue(quorum_settings)
    job_id = str(uuid.uuid4())
    publisher = Publisher.from_settings(quorum_settings)
    try:
        publisher.publish(job_id, 1, queue)
    finally:
        publisher.close()

    deliveries = 0
    with Connection(cluster.urls[1]) as connection:
        channel = connection.channel()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and deliveries <= DELIVERY_LIMIT + 1:
            message = channel.basic_get(queue)
            if message is None:
                time.sleep(0.05)
                continue
            deliveries += 1
            channel.basic_reject(message.delivery_tag, requeue=True)  # a worker giving up
            if deliveries == DELIVERY_LIMIT + 1:
                break

    assert deliveries == DELIVERY_LIMIT + 1
    dead = take(cluster.urls[1], Keys(quorum_settings.prefix).dead_letter_queue)
    assert dead is not None, "the message was not dead-lettered"
    assert job_id_of(dead) == job_id
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert take(cluster.urls[1], queue, timeout=0.5) is None


QUORUM = QueueKind("quorum", DELIVERY_LIMIT)
EXISTING: dict[str, tuple[QueueKind, bool, QueueKind]] = {
    # what the broker has (its kind, with priorities) -> what the settings ask for
    "classic to quorum": (CLASSIC, True, QUORUM),
    "earlier release to quorum": (CLASSIC, False, QUORUM),
    "quorum to classic": (QUORUM, False, QueueKind("classic", DELIVERY_LIMIT)),
    "another delivery limit": (QueueKind("quorum", 5), False, QUORUM),
    "another limit to classic": (QueueKind("quorum", 5), False, CLASSIC),
}


@pytest.mark.parametrize("existing", list(EXISTING))
def test_a_queue_declared_otherwise_is_used_as_it_is_with_one_warning(
    quorum_settings: Settings,
    cluster: RabbitCluster,
    caplog: pytest.LogCaptureFixture,
    existing: str,
) -> None:
    has, priorities, wanted = EXISTING[existing]
    configured = quorum_settings.model_copy(
        update={"queue_type": wanted.type, "queue_delivery_limit": wanted.delivery_limit}
    )
    keys = Keys(configured.prefix)
    queue = demo_queue(configured)
    with Connection(cluster.first.url) as connection:
        job_queue(keys, queue, kind=has, priorities=priorities)(connection.channel()).declare()
    caplog.set_level(logging.WARNING, logger="orchestrator_core.dispatch")

    publisher = Publisher.from_settings(configured)
    try:
        for _ in range(2):
            assert publisher.publish_many([Message(str(uuid.uuid4()), 1, queue)]) == [None]
    finally:
        publisher.close()
    worker_queues = consumed_queues(make_celery(configured), keys, [queue])

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if queue in w]) == 2, warnings  # publisher and worker, once
    [found] = worker_queues
    assert queue_type(found) == has.type  # what Celery reads to choose the prefetch's scope
    with Connection(cluster.urls[1]) as connection:
        found(connection.channel()).declare()  # as the worker does to consume: accepted
    assert cluster.queues("type")[queue]["type"] == has.type
    assert waiting(cluster.urls[1], queue) == 2


def test_the_publisher_keeps_publishing_confirmed_when_its_node_stops(
    quorum_settings: Settings, cluster: RabbitCluster
) -> None:
    queue = demo_queue(quorum_settings)
    publisher = Publisher.from_settings(quorum_settings)
    try:
        before = [Message(str(uuid.uuid4()), 1, queue) for _ in range(20)]
        assert publisher.publish_many(before) == [None] * 20
        assert cluster.connections(cluster.first) == 1, "not connected to the first broker"

        cluster.first.stop()
        after = [Message(str(uuid.uuid4()), 1, queue) for _ in range(20)]
        assert publisher.publish_many(after) == [None] * 20
        assert publisher.publish_many(after[:3]) == [None] * 3  # and carries on there
    finally:
        publisher.close()

    assert BrokerProbe(quorum_settings)() == "ok"  # two brokers of three answer
    assert waiting(cluster.urls[1], queue) == 43


def test_a_connection_goes_to_the_first_broker_that_answers(
    quorum_settings: Settings, cluster: RabbitCluster, hung_server: int
) -> None:
    refused = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    hung = f"amqp://guest:guest@127.0.0.1:{hung_server}//"
    configured = quorum_settings.model_copy(
        update={"broker_url": ",".join([refused, hung, cluster.urls[2]])}
    )
    queue = demo_queue(configured)
    publisher = Publisher.from_settings(configured)
    try:
        assert publisher.publish_many([Message(str(uuid.uuid4()), 1, queue)]) == [None]
    finally:
        publisher.close()
    [found] = consumed_queues(make_celery(configured), Keys(configured.prefix), [queue])
    assert queue_type(found) == "quorum"
    assert waiting(cluster.urls[0], queue) == 1


def test_a_worker_runs_jobs_from_quorum_queues_before_and_after_its_node_stops(
    quorum_settings: Settings, cluster: RabbitCluster, tmp_path: Path
) -> None:
    # The worker's first broker is the first node; the test submits through the others,
    # so the first node's connections are the worker's only.
    submitting = quorum_settings.model_copy(
        update={"broker_url": ",".join([*cluster.urls[1:], cluster.urls[0]])}
    )
    workers = QuorumWorkers(quorum_settings, tmp_path)
    publisher = Publisher.from_settings(submitting)
    jobs = Jobs(JobStore.from_settings(submitting), publisher, load_plugins(allow=["demo"]))
    try:
        worker = workers.start(concurrency=CONCURRENCY, types="demo.echo,demo.sleep")
        before = [jobs.submit("demo.echo", {"message": f"before {n}"}) for n in range(3)]
        for job in before:
            jobs.wait(job.id, State.COMPLETED, timeout=30)
        # Running while its message's connection goes: the broker delivers the message
        # again on the next one, and the job still runs once.
        sleeping = jobs.submit("demo.sleep", {"seconds": 4, "steps": 4})
        jobs.wait(sleeping.id, State.RUNNING, timeout=30)
        echo = Keys(quorum_settings.prefix).queue("demo.echo")
        [consumer] = [
            c
            for c in cluster.listing("consumers", "queue_name", "prefetch_count")
            if c["queue_name"] == echo
        ]
        # Per consumer (a quorum queue refuses a channel-wide prefetch), as Celery sets it.
        assert consumer["prefetch_count"] == CONCURRENCY * PREFETCH_MULTIPLIER
        assert cluster.connections(cluster.first) >= 1, "the worker is not on the first node"

        cluster.first.stop()
        after = [jobs.submit("demo.echo", {"message": f"after {n}"}) for n in range(5)]
        for job in after:
            done = jobs.wait(job.id, State.COMPLETED, timeout=60)
            assert done.attempts == 1
            assert done.result == {"message": f"after {after.index(job)}", "data": None}
        slept = jobs.wait(sleeping.id, State.COMPLETED, timeout=60)
        assert [h.state for h in slept.history] == [State.CREATED, State.RUNNING, State.COMPLETED]
        assert worker.process.poll() is None, "the worker stopped"
    finally:
        workers.stop_all()
        publisher.close()
        for started in workers.started:
            print(f"--- {started.log.name}\n{started.text()[-6000:]}")
    log = worker.text()
    assert "Global QoS is disabled" in log
    assert "global qos" not in log.lower().replace("global qos is disabled", "")
    # Every queue on the broker is a test's, under its prefix (DESIGN section 6): the
    # worker declared none of its own (Celery's delayed-delivery queues, say).
    assert all(name.startswith("test-") for name in cluster.queues()), sorted(cluster.queues())


def test_brokers_of_which_none_answers_are_a_clear_error_at_start_and_readyz_503(
    settings: Settings,
    redis_client: redis.Redis,
    hung_server: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    ports = [free_port(), hung_server, free_port()]  # refused, hung, refused
    configured = load_settings(
        prefix=settings.prefix,
        broker_url=",".join(f"amqp://guest:guest@127.0.0.1:{port}//" for port in ports),
        queue_type="quorum",
        publish_timeout_seconds=1.0,
        plugins=",".join(ALLOWED),
    )

    started = time.monotonic()
    workers = QuorumWorkers(configured, tmp_path)
    process = subprocess.Popen(
        [str(ORCHESTRATOR), "worker", "--concurrency", "1"],
        env=workers.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        stop_group(process)
    assert process.returncode != 0
    assert time.monotonic() - started < 60
    text = output.decode(errors="replace")
    assert "no broker answered" in text
    for port in ports:
        assert f"127.0.0.1:{port}" in text

    publisher = Publisher.from_settings(configured)
    try:
        with pytest.raises(BrokerUnavailableError, match="no broker answered") as failed:
            publisher.publish(str(uuid.uuid4()), 1, demo_queue(configured))
    finally:
        publisher.close()
    assert all(f"127.0.0.1:{port}" in str(failed.value) for port in ports)

    with serve(configured.model_copy(update={"plugins": ("demo",)})) as base_url:
        started = time.monotonic()
        ready = httpx.get(f"{base_url}/readyz", timeout=30)
    assert time.monotonic() - started < 10
    assert ready.status_code == 503
    assert "broker" in ready.json()["detail"]
    assert ready.json()["broker"].startswith("down: none of 3 brokers answers")
    assert "guest" not in ready.text
