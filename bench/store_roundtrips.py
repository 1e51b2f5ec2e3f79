"""Redis round trips and latency of one job lifecycle (create, RUNNING, COMPLETED).

Prints the store's figures beside a baseline measured in the same run: the same
number of bare PING round trips, which is the floor any Redis-backed design pays.

    python bench/store_roundtrips.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import redis

from bench.service import delete_keys
from orchestrator_core import State
from orchestrator_core.settings import load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis


class CountingConnection(redis.Connection):
    """Counts every write to the socket: one per command, or one per pipeline."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def lifecycle(store: JobStore) -> None:
    job = store.create("bench.noop", {"n": 1}, max_attempts=3)
    store.transition(job.id, State.RUNNING, owner="bench:1")
    store.transition(job.id, State.COMPLETED, fence="bench:1", result={"ok": True})


def timed(fn: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    p50 = ordered[len(ordered) // 2]
    return f"mean {statistics.fmean(samples):7.1f} us  p50 {p50:7.1f} us  p99 {p99:7.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    options = parser.parse_args()
    settings = load_settings(prefix=f"bench-{uuid.uuid4().hex[:8]}")
    client = connect_redis(settings)
    client.connection_pool.connection_class = CountingConnection
    store = JobStore(client, prefix=settings.prefix)
    try:
        lifecycle(store)  # loads the script once (SCRIPT LOAD after NOSCRIPT)
        before = CountingConnection.sent
        lifecycle(store)
        trips = CountingConnection.sent - before

        store_samples = timed(lambda: lifecycle(store), options.jobs)
        ping_samples = timed(lambda: [client.ping() for _ in range(trips)], options.jobs)
        print(f"round trips per lifecycle (create, RUNNING, COMPLETED): {trips}")
        print(f"job store lifecycle      {summary(store_samples)}")
        print(f"baseline {trips} x PING       {summary(ping_samples)}")
        ratio = statistics.fmean(store_samples) / statistics.fmean(ping_samples)
        print(f"lifecycle / baseline: {ratio:.2f}x over {options.jobs} runs each")
    finally:
        delete_keys(client, settings.prefix)


if __name__ == "__main__":
    main()
