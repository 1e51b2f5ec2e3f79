"""Real worker processes on the machine's RabbitMQ and Redis, each test under its own prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cleanup import delete_broker_objects, job_queues
from harness import ALLOWED, FIXTURES, Jobs, Workers
from services import require_broker

from orchestrator_core import load_plugins
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore


@pytest.fixture
def worker_settings(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.syspath_prepend(str(FIXTURES))  # the misbehaving job types, found by entry point
    configured = load_settings(
        prefix=settings.prefix,
        lease_seconds=1.0,
        cancel_grace_seconds=0.5,
        sweep_interval_seconds=0.1,
        plugins=",".join(ALLOWED),
    )
    require_broker(configured.broker_url)
    yield configured
    queues = job_queues(configured.prefix, load_plugins(allow=list(ALLOWED)))
    delete_broker_objects(configured.broker_url, configured.prefix, queues)


@pytest.fixture
def workers(worker_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(worker_settings, tmp_path)
    yield pool
    pool.stop_all()
    for worker in pool.started:
        print(f"--- {worker.log.name}\n{worker.text()[-6000:]}")


@pytest.fixture
def jobs(worker_settings: Settings) -> Iterator[Jobs]:
    publisher = Publisher.from_settings(worker_settings)
    yield Jobs(
        JobStore.from_settings(worker_settings), publisher, load_plugins(allow=list(ALLOWED))
    )
    publisher.close()
