"""The REST API served for real, over the machine's Redis and RabbitMQ, per test prefix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import redis
from apiserver import ApiFactory, serve
from cleanup import delete_broker_objects, job_queues
from netfaults import TcpProxy

from orchestrator_core import Settings, load_plugins, load_settings
from orchestrator_core.store import JobStore


@pytest.fixture
def api_settings(settings: Settings, redis_client: redis.Redis) -> Iterator[Settings]:
    configured = load_settings(
        prefix=settings.prefix,
        plugins="demo",
        redis_socket_timeout=1.0,
        redis_connect_timeout=1.0,
        publish_timeout_seconds=1.0,
        max_body_bytes=4096,
    )
    yield configured
    queues = job_queues(configured.prefix, load_plugins(allow=configured.plugins))
    delete_broker_objects(configured.broker_url, configured.prefix, queues)


@pytest.fixture
def start_api(api_settings: Settings) -> Iterator[ApiFactory]:
    """Starts an API with ``api_settings`` changed by keyword; returns an httpx client for it."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> httpx.Client:
            settings = load_settings(**{**api_settings.model_dump(), **overrides})
            base_url = stack.enter_context(serve(settings))
            return stack.enter_context(httpx.Client(base_url=base_url, timeout=15))

        yield start


@pytest.fixture
def api(start_api: ApiFactory) -> httpx.Client:
    return start_api()


@pytest.fixture
def jobs_store(api_settings: Settings) -> JobStore:
    return JobStore.from_settings(api_settings)


@pytest.fixture
def rabbit_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5672))
    yield proxy
    proxy.close()
