"""Worker deaths, duplicate deliveries, garbage messages and restarts lose nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis
from harness import Jobs, Workers
from kombu import Connection, Exchange, Producer

from orchestrator_core import State
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.settings import Settings, load_settings


def test_a_killed_worker_s_job_completes_as_a_new_attempt_on_another(
    workers: Workers, jobs: Jobs
) -> None:
    first = workers.start()
    job = jobs.submit("demo.sleep", {"seconds": 1.5, "steps": 3})
    jobs.wait(job.id, State.RUNNING)
    workers.start()
    first.kill()
    done = jobs.wait(job.id, State.COMPLETED, timeout=30)
    assert done.attempts == 2
    assert [(h.state, h.attempt, h.reason) for h in done.history] == [
        (State.CREATED, 0, None),
        (State.RUNNING, 1, None),
        (State.RETRYING, 1, "worker lost"),
        (State.RUNNING, 2, None),
        (State.COMPLETED, 2, None),
    ]


def test_messages_a_killed_worker_had_reserved_all_run_on_another(
    workers: Workers, jobs: Jobs
) -> None:
    # With the default prefetch a busy worker holds messages beyond the one it runs.
    first = workers.start(concurrency=1)
    running = jobs.submit("demo.sleep", {"seconds": 3, "steps": 3})
    jobs.wait(running.id, State.RUNNING)
    waiting = [jobs.submit("demo.echo", {"message": f"m{n}"}) for n in range(5)]
    queue = f"{jobs.store.keys.prefix}.demo.echo"
    with Connection(workers.settings.broker_url) as connection:
        deadline = time.monotonic() + 10
        while (ready := connection.default_channel.queue_declare(queue, passive=True)[1]) > 2:
            assert time.monotonic() < deadline, f"{ready} messages still ready"
            time.sleep(0.05)
    assert all(jobs.store.get(job.id).state is State.CREATED for job in waiting)

    first.kill()
    workers.start(concurrency=1)

    for job in waiting:
        done = jobs.wait(job.id, State.COMPLETED, timeout=30)
        assert done.attempts == 1
    assert jobs.wait(running.id, State.COMPLETED, timeout=30).attempts == 2


def test_a_job_that_kills_its_worker_every_time_ends_failed(workers: Workers, jobs: Jobs) -> None:
    workers.start()
    job = jobs.submit("wt.crash", {})
    failed = jobs.wait(job.id, State.FAILED, timeout=40)
    assert failed.attempts == 2
    assert failed.error is not None
    assert failed.error.type == "WorkerLost"
    assert failed.history[-1].reason == "attempts exhausted"
    assert [h.state for h in failed.history].count(State.RUNNING) == 2


def test_the_same_message_delivered_twice_executes_once(
    workers: Workers, jobs: Jobs, tmp_path: Path
) -> None:
    workers.start(concurrency=2)
    marks = tmp_path / "marks.txt"
    job = jobs.submit("wt.mark", {"path": str(marks)})
    jobs.publisher.publish(job.id, 1, f"{jobs.store.keys.prefix}.wt.mark")
    done = jobs.wait(job.id, State.COMPLETED)
    time.sleep(0.5)  # the duplicate has had every chance to run by now
    assert marks.read_text().splitlines() == [f"{job.id} 1"]
    assert done.attempts == 1


def test_garbage_messages_never_crash_the_worker(workers: Workers, jobs: Jobs) -> None:
    worker = workers.start()
    keys = jobs.store.keys
    queue = f"{keys.prefix}.demo.echo"
    exchange = Exchange(keys.exchange, type="direct", durable=True)
    with Connection(workers.settings.broker_url) as connection:
        producer = Producer(connection.default_channel, exchange=exchange, routing_key=queue)
        producer.publish(
            b"\x00not json", content_type="application/json", content_encoding="binary"
        )
        producer.publish({"hello": "world"}, serializer="json")
        producer.publish(
            json.dumps([["x"], {}, {}]).encode(),
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "somebody.elses_task", "id": "1", "lang": "py"},
        )
        producer.publish(
            json.dumps([[12345, "many", "args"], {}, {}]).encode(),
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "orchestrator.run_job", "id": "2", "lang": "py"},
        )
        producer.publish(
            json.dumps([["4b3c8f36-0000-4000-8000-000000000000", 1], {}, {}]).encode(),
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "orchestrator.run_job", "id": "3", "lang": "py"},
        )
    after = jobs.submit("demo.echo", {"message": "still here"})
    assert jobs.wait(after.id, State.COMPLETED).result["message"] == "still here"
    assert worker.process.poll() is None
    log = worker.text()
    assert "dropping malformed job message" in log
    assert "unknown job" in log
    with Connection(workers.settings.broker_url) as connection:
        dead = connection.default_channel.queue_declare(keys.dead_letter_queue, passive=True)
    # Messages that are not ours are kept for inspection rather than dropped silently.
    assert dead.message_count >= 1
    assert "unregistered task of type 'somebody.elses_task'" in log


def test_a_retry_waiting_out_its_backoff_survives_a_restart_of_every_worker(
    workers: Workers, jobs: Jobs
) -> None:
    first = workers.start()
    job = jobs.submit("wt.flaky", {})
    jobs.wait(job.id, State.RETRYING)
    first.kill()
    workers.start()
    done = jobs.wait(job.id, State.COMPLETED, timeout=30)
    assert done.result == {"attempt": 2}
    retried, restarted = done.history[2].at, done.history[3].at
    assert (restarted - retried).total_seconds() >= 2.0, "the backoff was not honoured"


def test_a_resumed_zombie_cannot_commit_over_the_attempt_that_replaced_it(
    workers: Workers, jobs: Jobs
) -> None:
    zombie = workers.start()
    job = jobs.submit("demo.sleep", {"seconds": 2, "steps": 4})
    jobs.wait(job.id, State.RUNNING)
    zombie.pause()
    workers.start()
    done = jobs.wait(job.id, State.COMPLETED, timeout=30)
    assert done.attempts == 2
    zombie.resume()
    deadline = time.monotonic() + 10
    while "lost its lease" not in zombie.text():
        assert time.monotonic() < deadline, "the resumed attempt never noticed it was replaced"
        time.sleep(0.05)
    time.sleep(0.5)
    assert jobs.store.get(job.id) == done, "the zombie's outcome must not be stored"


def test_a_message_arriving_while_redis_is_away_is_not_lost(
    workers: Workers, jobs: Jobs, redis_client: redis.Redis
) -> None:
    worker = workers.start()
    queue = f"{jobs.store.keys.prefix}.demo.echo"
    job = jobs.store.create("demo.echo", {"message": "late"}, max_attempts=1, queue=queue)
    jobs.store.dispatched([(job.id, 1)])  # out of the outbox: the message is all there is
    redis_client.execute_command("CLIENT", "PAUSE", 3000, "WRITE")
    try:
        jobs.publisher.publish(job.id, 1, queue)
        time.sleep(2.8)  # the worker's start times out (2 s) inside the pause
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    done = jobs.wait(job.id, State.COMPLETED, timeout=20)
    assert done.result == {"message": "late", "data": None}
    assert done.attempts == 1
    assert "the message goes back to the queue" in worker.text()


def test_a_message_put_back_while_redis_is_away_outlives_a_quorum_queue_s_delivery_limit(
    workers: Workers, jobs: Jobs, redis_client: redis.Redis, worker_settings: Settings
) -> None:
    # A quorum queue counts every requeue as a delivery and dead-letters a message past
    # its limit: the worker puts back a fresh copy instead, so a long Redis outage cannot
    # leave a job without its message.
    quorum = load_settings(
        **{**worker_settings.model_dump(), "queue_type": "quorum", "queue_delivery_limit": 1}
    )
    worker = workers.start(
        env={"ORCHESTRATOR_QUEUE_TYPE": "quorum", "ORCHESTRATOR_QUEUE_DELIVERY_LIMIT": "1"}
    )
    queue = f"{jobs.store.keys.prefix}.demo.echo"
    job = jobs.store.create("demo.echo", {"message": "late"}, max_attempts=1, queue=queue)
    jobs.store.dispatched([(job.id, 1)])  # out of the outbox: the message is all there is
    publisher = Publisher.from_settings(quorum)
    redis_client.execute_command("CLIENT", "PAUSE", 7500, "WRITE")
    try:
        publisher.publish(job.id, 1, queue)
        time.sleep(7.3)  # two starts time out (2 s each, then a 1 s pause) inside the pause
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
        publisher.close()
    done = jobs.wait(job.id, State.COMPLETED, timeout=20)
    assert done.result == {"message": "late", "data": None}
    assert worker.text().count("the message goes back to the queue") >= 2
    with Connection(quorum.broker_url) as connection:
        dead = connection.default_channel.queue_declare(
            jobs.store.keys.dead_letter_queue, passive=True
        )
    assert dead.message_count == 0, "the message was dead-lettered"


def test_a_start_the_store_lost_is_queued_again_by_its_worker(
    workers: Workers, jobs: Jobs, redis_client: redis.Redis
) -> None:
    # What a Redis failover can do: the promoted replica never had the write that
    # started the attempt, so the job is CREATED again with no message left (the worker
    # acks it). The worker, refused at renewal or commit, queues it again.
    worker = workers.start(types="wt.free")
    keys = jobs.store.keys
    queue = f"{keys.prefix}.wt.free"
    job = jobs.store.create("wt.free", {"seconds": 1.5}, max_attempts=2, queue=queue)
    before_start = redis_client.hgetall(keys.job(job.id))
    jobs.store.dispatched([(job.id, 1)])  # out of the outbox: the message is all there is
    jobs.publisher.publish(job.id, 1, queue)
    jobs.wait(job.id, State.RUNNING)
    with redis_client.pipeline() as pipe:  # the start, as if it had never been written
        pipe.delete(keys.job(job.id))
        pipe.hset(keys.job(job.id), mapping=before_start)
        pipe.zrem(keys.leases, job.id)
        pipe.zadd(keys.index_type_state("wt.free", State.CREATED), {job.id: before_start["seq"]})
        pipe.execute()
    done = jobs.wait(job.id, State.COMPLETED, timeout=30)
    assert [entry.state for entry in done.history] == [
        State.CREATED,
        State.RUNNING,
        State.COMPLETED,
    ]
    assert "its start was lost" in worker.text()
