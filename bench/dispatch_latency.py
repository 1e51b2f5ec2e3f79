"""Dispatch latency under an open loop: how long a submitted job waits to start.

Starts the API and two workers of concurrency 2 under a unique prefix, then offers
``POST /jobs`` at a fixed rate for a while (open loop: each request goes at its time,
whether or not the earlier ones were answered, as independent clients would send
them). From the documents' own timestamps (the Redis clock) it reports how many jobs a
second the API created and the workers completed, and the created -> RUNNING latency
(p50, p99, max). Every key, queue and exchange of the run is deleted at the end.
Talks only to 127.0.0.1.

    python bench/dispatch_latency.py [--rates 100,500] [--seconds S] [--summary FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from bench.api_throughput import BROKER_URL, HOST, REDIS_URL, Server, api_server, clean_up
from bench.service import Service, interrupt_once, stop_all
from bench.worker_throughput import BIN, WorkerProcess, worker_env
from cli.arguments import positive
from orchestrator_core import State, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.keys import Keys

WORKERS = 2
CONCURRENCY = 2
CONNECTIONS = 64
"""Kept-alive connections the offered requests share (more than are ever busy at once)."""


@dataclass(frozen=True)
class Run:
    offered: float
    """Jobs a second sent."""
    created: float
    """Jobs a second the API created (201s over the sending time)."""
    completed: float
    """Jobs a second the workers completed, from the first creation to the last end."""
    p50_ms: float
    p99_ms: float
    max_ms: float
    """Created -> RUNNING, from each document's ``created_at`` and ``started_at``."""
    refused: int


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def offer(url: str, rate: float, seconds: float) -> tuple[list[str], float, int]:
    """Send ``rate`` jobs a second for ``seconds``; the ids created, the sending time, the
    refused count.

    The requests go over a pool of kept-alive connections with a few lines of HTTP of
    our own: a general client costs the sending process more CPU than the API spends.
    """
    host, port = url.removeprefix("http://").split(":")
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))
    ids: list[str] = []
    refused = 0

    async def one(n: int) -> None:
        nonlocal refused
        body = json.dumps({"type": "demo.echo", "payload": {"message": f"m{n}"}}).encode()
        reader, writer = await pool.get()
        writer.write(
            b"POST /jobs HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: "
            b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        answer = await reader.readexactly(length)
        pool.put_nowait((reader, writer))
        if status == 201:
            ids.append(json.loads(answer)["id"])
        else:
            refused += 1

    count = int(rate * seconds)
    started = time.monotonic()
    tasks = []
    for n in range(count):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    sending = time.monotonic() - started
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return ids, sending, refused


def measure(store: JobStore, api: Server, rate: float, seconds: float) -> Run:
    ids, sending, refused = asyncio.run(offer(api.base_url, rate, seconds))
    deadline = time.monotonic() + 120
    jobs = []
    for job_id in ids:
        while (job := store.get(job_id)).state is not State.COMPLETED:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {job.state} two minutes on")
            time.sleep(0.01)
        jobs.append(job)
    waits = [
        (job.started_at - job.created_at).total_seconds() * 1000
        for job in jobs
        if job.started_at is not None
    ]
    first = min(job.created_at for job in jobs)
    last = max(job.finished_at for job in jobs if job.finished_at is not None)
    return Run(
        offered=rate,
        created=len(ids) / sending,
        completed=len(jobs) / max(1e-9, (last - first).total_seconds()),
        p50_ms=percentile(waits, 0.50),
        p99_ms=percentile(waits, 0.99),
        max_ms=max(waits),
        refused=refused,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default="100,500", help="jobs a second to offer, comma-separated"
    )
    parser.add_argument("--seconds", type=positive, default=10, help="seconds per rate")
    parser.add_argument("--summary", type=Path, metavar="FILE", help="write the figures as JSON")
    options = parser.parse_args()
    rates = [float(rate) for rate in options.rates.split(",")]
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)

    run_id = uuid.uuid4().hex[:8]
    keys = Keys(f"bench-dispatch-{run_id}")
    client = redis.Redis.from_url(REDIS_URL, client_name=f"{keys.prefix}-bench")
    services: list[Service] = []
    try:
        api = api_server(keys.prefix, 1)
        services.append(api)
        env = worker_env(
            {
                "ORCHESTRATOR_PREFIX": keys.prefix,
                "ORCHESTRATOR_PLUGINS": "demo",
                "ORCHESTRATOR_REDIS_URL": REDIS_URL,
                "ORCHESTRATOR_BROKER_URL": BROKER_URL,
            }
        )
        argv = [str(BIN / "orchestrator"), "--log-level", "INFO", "worker"]
        workers = [
            WorkerProcess(f"worker-{n}", [*argv, "--concurrency", str(CONCURRENCY)], env)
            for n in range(WORKERS)
        ]
        services.extend(workers)
        api.wait_ready()
        for worker in workers:
            worker.wait_ready()
        store = JobStore.from_settings(
            load_settings(prefix=keys.prefix, redis_url=REDIS_URL, broker_url=BROKER_URL)
        )
        print(
            f"run {run_id}: api on {api.base_url}, {WORKERS} workers x {CONCURRENCY}; "
            f"open loop, {options.seconds} s per rate, from {HOST}"
        )
        measure(store, api, 50, 2)  # warm-up
        runs = []
        for rate in rates:
            run = measure(store, api, rate, options.seconds)
            runs.append(run)
            print(
                f"offered {run.offered:5.0f}/s: created {run.created:6.1f}/s, completed "
                f"{run.completed:6.1f}/s; created -> RUNNING p50 {run.p50_ms:6.1f} ms, "
                f"p99 {run.p99_ms:6.1f} ms, max {run.max_ms:7.1f} ms; refused {run.refused}",
                flush=True,
            )
        if options.summary is not None:
            options.summary.write_text(json.dumps([asdict(r) for r in runs]), encoding="utf-8")
    finally:
        stop_all(services)
        clean_up(keys, client)


if __name__ == "__main__":
    main()
