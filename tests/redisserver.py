"""A private redis-server on a loopback port, for the tests whose figure is the whole
server's: ``INFO memory`` of the shared Redis also counts what the other tests write,
and its ``maxmemory-policy`` must not be changed under them."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from processes import free_port, stop
from services import unavailable


@contextlib.contextmanager
def private_redis(directory: Path, *config: str) -> Iterator[str]:
    """Run a redis-server with no persistence on 127.0.0.1, with ``config`` arguments
    (``"--maxmemory-policy", "allkeys-lru"``, say); yields its URL, stops it by its PID."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server", "PATH", FileNotFoundError("redis-server is not installed"))
    port = free_port()
    log = directory / f"redis-{port}.log"
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory), "--logfile", str(log), *config]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        probe = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    raise AssertionError(f"redis-server did not start:\n{text}") from None
                time.sleep(0.05)
        probe.close()
        yield url
    finally:
        stop(process)
