"""The API served by a real uvicorn in a thread, on a loopback port of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from api.main import create_app
from orchestrator_core import Settings

ApiFactory = Callable[..., httpx.Client]
"""Starts an API with the test's settings changed by keyword; returns a client for it."""


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Serve the app for ``settings``; yields its base URL."""
    app = create_app(settings)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
