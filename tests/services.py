"""The machine's Redis and RabbitMQ, which the tests that claim to test the system need.

Without them a test is skipped on a developer's machine and fails in CI, where a
missing service means the run proved nothing.
"""

from __future__ import annotations

import os

import pytest
import redis
from kombu import Connection


def unavailable(service: str, url: str, exc: Exception) -> None:
    """Skip the test, or fail it in CI, because ``service`` at ``url`` did not answer."""
    if os.environ.get("CI"):
        pytest.fail(f"{service} at {url} is required in CI: {exc}")
    pytest.skip(f"{service} at {url} is not running: {exc}")


def require_redis(client: redis.Redis, url: str) -> None:
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", url, exc)


def require_broker(url: str) -> None:
    with Connection(url, connect_timeout=5) as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except Exception as exc:  # kombu raises the transport's own errors
            unavailable("RabbitMQ", url, exc)
