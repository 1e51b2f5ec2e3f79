"""Shared fixtures: each test owns a key prefix on the machine's real Redis, cleaned up after."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from cleanup import delete_keys
from services import require_redis

from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings() -> Settings:
    return load_settings(prefix=unique_prefix(), redis_socket_timeout=2.0, lease_seconds=30.0)


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = connect_redis(settings)
    require_redis(client, settings.redis_url)
    yield client
    delete_keys(client, settings.prefix)
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> JobStore:
    return JobStore(redis_client, prefix=settings.prefix, lease_seconds=settings.lease_seconds)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers, like a wedged Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
