"""The API served by a real uvicorn in a thread, on a loopback port of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.types import ASGIApp

from api.main import create_app
from orchestrator_core import Settings

ApiFactory = Callable[..., httpx.Client]
"""Starts an API with the test's settings changed by keyword; returns a client for it."""


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> float:
        """Stop the server as its owner would; return how long it took."""
        started = time.monotonic()
        self.server.should_exit = True
        self.thread.join(15)
        return time.monotonic() - started


@contextmanager
def served(app: ASGIApp, *, send_buffer: int | None = None, port: int = 0) -> Iterator[Served]:
    """Serve ``app`` (on ``port``, default any); ``send_buffer`` fixes the kernel's send
    buffer of each connection (it grows to megabytes by itself, which a test of a reader
    that stops reading must fill)."""
    sock = socket.create_server(("127.0.0.1", port))
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # connections inherit it
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Serve the app for ``settings``; yields its base URL."""
    with served(create_app(settings)) as server:
        yield server.url
