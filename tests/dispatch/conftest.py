"""The machine's RabbitMQ and Redis, under the test's own prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from cleanup import delete_broker_objects
from services import require_broker

from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore


@pytest.fixture
def broker_settings(settings: Settings, redis_client: redis.Redis) -> Iterator[Settings]:
    configured = load_settings(prefix=settings.prefix, publish_timeout_seconds=1.0)
    require_broker(configured.broker_url)
    yield configured
    delete_broker_objects(configured.broker_url, configured.prefix, [f"{configured.prefix}.t.demo"])


@pytest.fixture
def publisher(broker_settings: Settings) -> Iterator[Publisher]:
    publisher = Publisher.from_settings(broker_settings)
    yield publisher
    publisher.close()


@pytest.fixture
def broker_store(broker_settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, prefix=broker_settings.prefix)


@pytest.fixture
def unreachable_publisher(broker_settings: Settings, closed_port: int) -> Iterator[Publisher]:
    """A publisher whose broker is a closed port of 127.0.0.1: nothing answers."""
    url = f"amqp://guest:guest@127.0.0.1:{closed_port}//"
    publisher = Publisher.from_settings(
        load_settings(**{**broker_settings.model_dump(), "broker_url": url})
    )
    yield publisher
    publisher.close()
