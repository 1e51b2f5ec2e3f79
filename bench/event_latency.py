"""Event delivery: a transition's write to its arrival on ``GET /events``, beside the floor.

Starts the control plane (``orchestrator api``) under a unique prefix and follows
``GET /events`` over SSE on one thread while a second thread reads the same Redis stream
with a bare ``XREAD BLOCK``: the floor, what any reader of the stream pays with no API
in between. This process then creates N jobs at a steady rate through the store (each
creation is one transition and one stream entry) and notes the instant before each
write; each reader notes the instant each event arrives. Reported: the latency
percentiles of both readers over the same events, and whether every event reached
both. Every Redis key of the run is deleted at the end. Talks only to 127.0.0.1.

    python bench/event_latency.py [--events N] [--rate R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import redis

from bench.api_throughput import ApiProcess, api_env, clean_up, free_port, percentile
from cli.arguments import positive
from orchestrator_client import parse_event_stream
from orchestrator_core.settings import load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.keys import Keys

SETTLE_SECONDS = 5.0
"""How long the readers may take after the last write before the run ends."""


@dataclass
class Arrivals:
    """When each job's first event reached one reader, by job id."""

    at: dict[str, float] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, job_id: str) -> None:
        now = time.perf_counter()
        with self.lock:
            self.at.setdefault(job_id, now)


def follow_sse(base_url: str, arrivals: Arrivals, stop: threading.Event) -> None:
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(5.0, read=30.0)) as client,
        client.stream("GET", "/events") as response,
    ):
        response.raise_for_status()
        arrivals.ready.set()
        for message in parse_event_stream(response.iter_lines()):
            if message.data is not None:
                arrivals.note(json.loads(message.data)["job_id"])
            if stop.is_set():
                return


def follow_redis(
    client: redis.Redis, keys: Keys, arrivals: Arrivals, stop: threading.Event
) -> None:
    last = "$"
    arrivals.ready.set()
    while not stop.is_set():
        reply = client.xread({keys.events: last}, count=500, block=200)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                arrivals.note(fields["job_id"])
                last = entry_id


def summary(label: str, written: dict[str, float], arrivals: Arrivals) -> str:
    latencies = [
        (arrivals.at[job_id] - at) * 1000 for job_id, at in written.items() if job_id in arrivals.at
    ]
    missing = len(written) - len(latencies)
    if not latencies:
        return f"{label:<22} no event arrived ({missing} missing)"
    return (
        f"{label:<22} p50 {statistics.median(latencies):6.2f} ms  "
        f"p99 {percentile(latencies, 0.99):6.2f} ms  max {max(latencies):7.2f} ms  "
        f"received {len(latencies)}/{len(written)}"
    )


def run(events: int, rate: int) -> None:
    prefix = f"bench-events-{uuid.uuid4().hex[:8]}"
    settings = load_settings(prefix=prefix)
    keys = Keys(prefix)
    client = connect_redis(settings)
    reader = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    store = JobStore(client, prefix=prefix)
    api = ApiProcess(free_port(), api_env(prefix))
    stop = threading.Event()
    sse, floor = Arrivals(), Arrivals()
    try:
        api.wait_ready()
        threads = [
            threading.Thread(target=follow_sse, args=(api.base_url, sse, stop), daemon=True),
            threading.Thread(target=follow_redis, args=(reader, keys, floor, stop), daemon=True),
        ]
        for thread in threads:
            thread.start()
        for arrivals in (sse, floor):
            if not arrivals.ready.wait(10):
                raise RuntimeError("a reader did not start")
        time.sleep(0.5)  # both subscriptions settled: the SSE route takes its position first
        print(f"run {prefix}: {events} jobs created at {rate}/s, GET /events on {api.base_url}")
        written: dict[str, float] = {}
        interval = 1 / rate
        next_at = time.perf_counter()
        for _ in range(events):
            job_id = str(uuid.uuid4())
            written[job_id] = time.perf_counter()
            store.create("demo.echo", {"message": "x"}, max_attempts=1, job_id=job_id)
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline and min(len(sse.at), len(floor.at)) < events:
            time.sleep(0.05)
        print(summary("bare XREAD (floor)", written, floor))
        print(summary("GET /events (SSE)", written, sse))
    finally:
        stop.set()
        api.stop()
        reader.close()
        clean_up(keys, client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive, default=2000, help="jobs to create")
    parser.add_argument("--rate", type=positive, default=200, help="creations per second")
    options = parser.parse_args()
    run(options.events, options.rate)


if __name__ == "__main__":
    main()
