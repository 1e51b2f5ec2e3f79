"""The API served by a real uvicorn in a thread, on a loopback port of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from kombu import Connection

from api.main import create_app
from orchestrator_core import Settings, load_plugins
from orchestrator_core.broker import queue_name
from orchestrator_core.keys import Keys

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


def delete_broker_objects(settings: Settings, broker_url: str = "") -> None:
    """Delete the queues and exchanges a run under ``settings.prefix`` may have declared."""
    keys = Keys(settings.prefix)
    plugins = load_plugins(allow=settings.plugins)
    queues = {queue_name(keys, r.job_type) for r in plugins.job_types.values()}
    queues.add(keys.dead_letter_queue)
    with Connection(broker_url or "amqp://guest:guest@127.0.0.1:5672//", connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in sorted(queues):
            channel.queue_delete(queue)
        for exchange in (keys.exchange, keys.dead_letter_exchange):
            channel.exchange_delete(exchange)
