"""The worker heartbeat in Redis: stamped by Redis time, pruned when stale, gone on stop."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from dataclasses import replace

import pytest
import redis
from harness import Workers

from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.keys import Keys
from orchestrator_core.telemetry.heartbeats import (
    HEARTBEAT_SECONDS,
    STALE_HEARTBEATS,
    WorkerBeat,
    live_workers,
)
from worker.heartbeat import Heartbeat


def record(name: str = "w1@host", *, interval: float = HEARTBEAT_SECONDS) -> WorkerBeat:
    return WorkerBeat(
        worker=name,
        hostname="host",
        pid=4242,
        concurrency=3,
        interval=interval,
        plugin_load_failures=1,
        job_types=("demo.echo", "demo.sleep"),
    )


def stored(client: redis.Redis, keys: Keys) -> dict[str, WorkerBeat]:
    raw: dict[str, str] = client.hgetall(keys.workers)
    return {name: WorkerBeat.decode(name, value) for name, value in raw.items()}


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds + micros / 1_000_000)


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.prefix)


def test_a_beat_is_stamped_with_redis_time_and_keeps_its_first_start(
    redis_client: redis.Redis, keys: Keys
) -> None:
    heartbeat = Heartbeat(redis_client, keys, record())
    before = redis_now(redis_client)
    heartbeat.beat_once()
    first = stored(redis_client, keys)["w1@host"]
    time.sleep(0.05)
    heartbeat.beat_once()
    second = stored(redis_client, keys)["w1@host"]

    assert first == replace(record(), started_at=first.started_at, last_seen=first.last_seen)
    assert before - 0.01 <= first.started_at == first.last_seen <= redis_now(redis_client)
    assert second.started_at == first.started_at
    assert second.last_seen >= first.last_seen + 0.04
    assert second.job_types == ("demo.echo", "demo.sleep")


def test_a_beat_deletes_stale_and_unreadable_records_of_others(
    redis_client: redis.Redis, keys: Keys
) -> None:
    now = redis_now(redis_client)
    stale = record("crashed@host")
    redis_client.hset(
        keys.workers,
        mapping={
            "crashed@host": json.dumps(
                {
                    **json.loads(stale.encode()),
                    "started_at": now - 600,
                    "last_seen": now - STALE_HEARTBEATS * HEARTBEAT_SECONDS - 1,
                }
            ),
            "garbage@host": "not json",
            "alive@host": json.dumps(
                {**json.loads(stale.encode()), "started_at": now - 60, "last_seen": now - 1}
            ),
        },
    )

    pruned = Heartbeat(redis_client, keys, record()).beat_once()

    assert pruned == 2
    assert set(stored(redis_client, keys)) == {"w1@host", "alive@host"}
    # If every worker goes quiet, the hash itself does not outlive them by much.
    ttl_ms = redis_client.pttl(keys.workers)
    assert 0 < ttl_ms <= 2000 * STALE_HEARTBEATS * HEARTBEAT_SECONDS


def test_run_beats_every_interval_and_removes_the_record_when_stopped(
    redis_client: redis.Redis, keys: Keys
) -> None:
    heartbeat = Heartbeat(redis_client, keys, record(interval=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=heartbeat.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    seen: set[float] = set()
    while len(seen) < 3:
        assert time.monotonic() < deadline, f"beats seen: {seen}"
        if beat := stored(redis_client, keys).get("w1@host"):
            seen.add(beat.last_seen)
        time.sleep(0.01)

    stop.set()
    thread.join(5)

    assert not thread.is_alive()
    assert redis_client.hexists(keys.workers, "w1@host") == 0


def test_run_rides_out_a_redis_outage(
    settings: Settings, closed_port: int, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect_redis(
        load_settings(prefix=settings.prefix, redis_url=f"redis://127.0.0.1:{closed_port}/0")
    )
    heartbeat = Heartbeat(client, keys, record(interval=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=heartbeat.run, args=(stop,), daemon=True)

    with caplog.at_level(logging.WARNING, logger="worker.heartbeat"):
        thread.start()
        time.sleep(0.2)
        stop.set()
        thread.join(5)

    assert not thread.is_alive()
    assert "heartbeat failed; trying again" in caplog.text
    assert "could not remove the worker heartbeat" in caplog.text


def test_live_workers_leave_out_stale_and_unreadable_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = 1_000_000.0
    fresh = {**json.loads(record().encode()), "started_at": now - 50, "last_seen": now - 14}
    stale = {**fresh, "last_seen": now - STALE_HEARTBEATS * HEARTBEAT_SECONDS - 0.1}
    # Redis's cjson writes an empty list back as an empty object.
    empty = {**fresh, "job_types": {}}

    with caplog.at_level(logging.WARNING):
        beats = live_workers(
            {
                "b@host": json.dumps(fresh),
                "a@host": json.dumps(empty),
                "old@host": json.dumps(stale),
                "bad@host": json.dumps({"pid": "x"}),
            },
            now,
        )

    assert [(beat.worker, beat.job_types) for beat in beats] == [
        ("a@host", ()),
        ("b@host", ("demo.echo", "demo.sleep")),
    ]
    assert "malformed heartbeat of worker 'bad@host'" in caplog.text


def test_a_worker_process_beats_while_it_runs_and_clears_its_record_on_a_clean_stop(
    workers: Workers, redis_client: redis.Redis
) -> None:
    keys = Keys(workers.settings.prefix)
    worker = workers.start(concurrency=2, types="demo.echo,demo.sleep")
    name = f"orchestrator-{worker.process.pid}@{socket.gethostname()}"
    deadline = time.monotonic() + 10
    while not (beats := stored(redis_client, keys)):
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.05)
    first = beats[name]
    assert first.pid == worker.process.pid
    assert first.hostname == socket.gethostname()
    assert first.concurrency == 2
    assert first.job_types == ("demo.echo", "demo.sleep")
    assert first.plugin_load_failures == 0
    assert first.interval == HEARTBEAT_SECONDS
    assert first.fresh(redis_now(redis_client))

    deadline = time.monotonic() + 2 * HEARTBEAT_SECONDS
    while (latest := stored(redis_client, keys)[name]).last_seen == first.last_seen:
        assert time.monotonic() < deadline, "the heartbeat was never refreshed"
        time.sleep(0.1)
    assert latest.started_at == first.started_at

    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=15)

    assert stored(redis_client, keys) == {}
    assert "heartbeat failed" not in worker.text()
