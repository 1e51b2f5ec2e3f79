"""The client against a real API and a real worker on the machine's Redis and RabbitMQ,
one pair a test module, under a prefix of its own that is deleted afterwards."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cleanup import delete_broker_objects, delete_keys, job_queues

from orchestrator_core import Settings, load_plugins, load_settings
from orchestrator_core.store.connection import connect_redis

TESTS = Path(__file__).resolve().parent.parent
# The API and the worker are run exactly as their own suites run them.
for shared in (TESTS / "api", TESTS / "worker"):
    if str(shared) not in sys.path:
        sys.path.append(str(shared))

from apiserver import serve  # noqa: E402
from harness import ALLOWED, FIXTURES, Workers  # noqa: E402


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stack_settings() -> Iterator[Settings]:
    configured = load_settings(
        prefix=f"test-{uuid.uuid4().hex[:12]}",
        plugins="demo",
        lease_seconds=5.0,
        cancel_grace_seconds=2.0,
        sweep_interval_seconds=0.2,
    )
    yield configured
    redis_client = connect_redis(configured)
    try:
        delete_keys(redis_client, configured.prefix)
    finally:
        redis_client.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURES))  # the worker's test job types, by entry point
        queues = job_queues(configured.prefix, load_plugins(allow=list(ALLOWED)))
    delete_broker_objects(configured.broker_url, configured.prefix, queues)


@pytest.fixture(scope="module")
def api_url(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an API served in a thread, with one worker (concurrency 2) behind it."""
    workers = Workers(stack_settings, tmp_path_factory.mktemp("client-worker"))
    try:
        workers.start(concurrency=2)
        with serve(stack_settings) as url:
            yield url
    finally:
        workers.stop_all()
