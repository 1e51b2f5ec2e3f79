"""Shared fixtures: each test owns a key prefix on the machine's real Redis, cleaned up after."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from orchestrator_core.connection import connect_redis
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


@pytest.fixture
def settings() -> Settings:
    return load_settings(prefix=unique_prefix(), redis_socket_timeout=2.0, lease_seconds=30.0)


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = connect_redis(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {settings.redis_url} is required in CI: {exc}")
        pytest.skip(f"Redis at {settings.redis_url} is not running: {exc}")
    yield client
    delete_prefix(client, settings.prefix)
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


class TcpProxy:
    """A loopback TCP proxy in front of a real service, to stop or hang it for one client.

    ``forward`` passes bytes both ways; ``refuse`` drops every connection, as a stopped
    service would; ``hang`` keeps connections open but passes nothing, as a wedged one would.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "forward"
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = int(self._server.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "forward":
            self._drop_all(close=mode == "refuse")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._drop_all(close=True)
        self._server.close()

    def _drop_all(self, *, close: bool) -> None:
        if not close:
            return
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            if self.mode == "refuse":
                client.close()
                continue
            with self._lock:
                self._open.append(client)
            if self.mode == "hang":
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(None)
        try:
            while chunk := source.recv(65536):
                while self.mode == "hang":
                    if self._stop.wait(0.05):
                        return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def rabbit_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5672))
    yield proxy
    proxy.close()
