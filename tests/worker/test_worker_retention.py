"""Retention through a real worker: its sweep deletes finished jobs, and it warns at
start-up about a Redis that may evict them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from harness import Jobs, Workers
from redisserver import private_redis

from orchestrator_core import JobNotFoundError, State
from orchestrator_core.settings import Settings
from orchestrator_core.telemetry.metrics import JobMetrics


@dataclass
class ConfiguredWorkers(Workers):
    """Workers started with more ``ORCHESTRATOR_*`` variables than the harness sets."""

    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


@pytest.fixture
def start_worker(worker_settings: Settings, tmp_path: Path) -> Iterator[ConfiguredWorkers]:
    pool = ConfiguredWorkers(worker_settings, tmp_path)
    yield pool
    pool.stop_all()
    for worker in pool.started:
        print(f"--- {worker.log.name}\n{worker.text()[-6000:]}")


def test_the_sweep_deletes_a_finished_job_once_its_retention_is_over(
    start_worker: ConfiguredWorkers, jobs: Jobs, redis_client: redis.Redis
) -> None:
    start_worker.extra["ORCHESTRATOR_RETENTION_SECONDS"] = "0.5"
    worker = start_worker.start()
    job = jobs.submit("demo.echo", {"message": "short-lived"})
    jobs.wait(job.id, State.COMPLETED)

    deadline = time.monotonic() + 15
    while True:
        try:
            jobs.store.get(job.id)
        except JobNotFoundError:
            break
        assert time.monotonic() < deadline, "the worker's sweep never deleted the job"
        time.sleep(0.05)
    prefix = jobs.store.keys.prefix
    assert [key for key in redis_client.scan_iter(match=f"{prefix}:*") if job.id in key] == []
    assert job.id not in redis_client.zrange(jobs.store.keys.expiries, 0, -1)
    jobs.store.fold_metrics()
    metrics = JobMetrics.decode(redis_client.hgetall(jobs.store.keys.metrics))
    assert metrics.transitions[("demo.echo", "COMPLETED")] == 1
    assert "sweep deleted 1 finished jobs past their retention" in worker.text()


def test_the_worker_warns_at_start_up_when_redis_may_evict_jobs(
    start_worker: ConfiguredWorkers, tmp_path: Path
) -> None:
    with private_redis(tmp_path, "--maxmemory-policy", "allkeys-lru") as url:
        start_worker.extra["ORCHESTRATOR_REDIS_URL"] = url
        text = start_worker.start().text()
        start_worker.stop_all()
    assert warnings(text, "maxmemory-policy is 'allkeys-lru'")


def test_the_worker_starts_when_redis_is_down_and_says_so(
    start_worker: ConfiguredWorkers, closed_port: int
) -> None:
    start_worker.extra["ORCHESTRATOR_REDIS_URL"] = f"redis://127.0.0.1:{closed_port}/0"
    text = start_worker.start().text()
    assert warnings(text, "could not tell whether Redis evicts keys")


def warnings(log: str, words: str) -> list[str]:
    """The WARNING lines of ``log`` that say ``words``."""
    return [line for line in log.splitlines() if " WARNING " in line and words in line]
