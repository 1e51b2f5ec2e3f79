"""What ``WAIT 1`` after each store write costs per job, against a primary and a replica.

Starts a private redis-server primary and one replica on loopback, then runs job
lifecycles (create, start under a lease, end the attempt: three script calls) through
two stores on the same primary, alternately so both see the same machine: one as
today, one whose every call is followed on the same trip by ``WAIT 1`` (the store's
calls are sent through :class:`ThreadConnections` with ``replicas=1``). Prints both
side by side.

    python -m bench.redis_wait [--jobs 2000] [--timeout-ms 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

from bench.service import Service, delete_keys, stop_all
from orchestrator_core import State
from orchestrator_core.settings import load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import ThreadConnections, connect_redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server(directory: Path, name: str, *config: str) -> tuple[Service, int]:
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(directory), "--repl-diskless-sync-delay", "0"]
    service = Service(name, [*argv, *config], env=dict(os.environ))
    client = redis.Redis("127.0.0.1", port, socket_timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            service.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{service.tail()}") from None
            time.sleep(0.05)
    client.close()
    return service, port


def lifecycle(store: JobStore) -> None:
    job = store.create("bench.noop", {"n": 1}, max_attempts=3)
    started = store.start(job.id, 1, "bench:1")
    assert started.started, started.reason
    store.end_attempt(job.id, State.COMPLETED, fence="bench:1", result={"ok": True})


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"mean {statistics.fmean(samples):7.1f} us  p50 {p50:7.1f} us  p99 {p99:7.1f} us"


def alternate(runs: int, *calls: Callable[[], None]) -> list[list[float]]:
    """Each of ``calls`` ``runs`` times, taking turns; microseconds per call."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for call, into in zip(calls, samples, strict=True):
            started = time.perf_counter()
            call()
            into.append((time.perf_counter() - started) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--timeout-ms", type=int, default=100)
    options = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    directory = Path(tempfile.mkdtemp(prefix="redis-wait-"))
    services: list[Service] = []
    try:
        primary, port = redis_server(directory, "primary")
        services.append(primary)
        replica, _ = redis_server(directory, "replica", "--replicaof", "127.0.0.1", str(port))
        services.append(replica)
        settings = load_settings(redis_url=f"redis://127.0.0.1:{port}/0", prefix="bench-wait")
        client = connect_redis(settings)
        deadline = time.monotonic() + 20
        while int(client.wait(1, 100)) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not catch up:\n{replica.tail()}")
        plain = JobStore(client, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        waited = JobStore(client, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        # As the store's script sends its calls with a replica count set.
        waited._call._connections = ThreadConnections(
            client, replicas=1, replica_timeout=options.timeout_ms / 1000
        )
        alternate(200, lambda: lifecycle(plain), lambda: lifecycle(waited))  # warm up
        without, with_wait = alternate(
            options.jobs, lambda: lifecycle(plain), lambda: lifecycle(waited)
        )
        print(f"per job (create, start, end: 3 script calls), {options.jobs} jobs each,")
        print("primary and one replica on loopback, taking turns:")
        print(f"  without WAIT      {summary(without)}")
        print(f"  WAIT 1 each call  {summary(with_wait)}")
        added = statistics.fmean(with_wait) - statistics.fmean(without)
        print(
            f"  WAIT adds {added:.1f} us per job ({added / 3:.1f} us per write), "
            f"{statistics.fmean(with_wait) / statistics.fmean(without):.2f}x"
        )
        for store in (plain, waited):
            delete_keys(client, store.keys.prefix)
        client.close()
    finally:
        stop_all(services)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
