"""What the benchmarks start and clean up: services in sessions of their own, keys, queues."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import redis
from kombu import Connection

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 10.0


class Service:
    """Starts ``argv`` with ``env`` in a session of its own: it and its children stop together."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
        os.close(handle)
        self.log = Path(path)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_running(self) -> None:
        """Raise, with the end of the log, if the process has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL if it is still there after a while."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


def delete_keys(client: redis.Redis, prefix: str) -> int:
    """Delete every Redis key under ``prefix``; returns how many there were."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return len(keys)


def delete_broker_entities(broker_url: str, queues: list[str], exchanges: list[str]) -> None:
    """Delete queues and exchanges, a channel each: one failed delete closes only its own."""
    with Connection(broker_url, connect_timeout=5) as connection:
        for name in queues:
            with connection.channel() as channel:
                channel.queue_delete(name)
        for name in exchanges:
            with connection.channel() as channel:
                channel.exchange_delete(name)


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Run one clean-up step; report its failure and go on with the others."""
    try:
        yield
    except Exception as exc:
        print(f"clean-up: {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def stop_all(services: Iterable[Service], *, keep_logs: bool = False) -> None:
    """Stop every service, each step reported and passed over if it fails; their logs are
    deleted, or kept and named."""
    for service in services:
        with step(f"stopping {service.name}"):
            service.stop()
        if keep_logs:
            print(f"{service.name} log kept: {service.log}")
        else:
            service.log.unlink(missing_ok=True)


def interrupt_once(signum: int, frame: object) -> None:
    """First SIGINT or SIGTERM: stop the run; any later one is ignored so clean-up finishes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"\n{signal.Signals(signum).name}: cleaning up, please wait", file=sys.stderr)
    raise KeyboardInterrupt
