"""What flow control costs, and how well it holds (DESIGN section 9).

Three figures, each beside its baseline measured in the same run:

1. **Drain with limits that never bind** vs the same type without limits: a fresh
   worker (concurrency C) working off N ``demo.echo`` jobs queued before it started,
   alternating between an override of ``concurrency`` 100,000 and ``rate_limit``
   100,000/s (so every start counts its slot and its rate in Redis) and no override,
   R rounds, medians. Target: >= 0.9x.
2. **Slot freed -> next RUNNING** under a binding limit: ``demo.sleep`` jobs of 50 ms
   with ``concurrency`` 1, submitted at once: for each job after the first, its
   ``started_at`` minus the previous job's ``finished_at`` (the Redis clock), p50/p99.
   Target: p99 <= 100 ms.
3. **Rate accuracy**: K ``demo.echo`` jobs under ``rate_limit`` "50/s": the achieved
   rate of their starts, (K - 1) / (last start - first start), beside the configured one.

Every key, queue and exchange of the run is deleted at the end. Talks only to 127.0.0.1.

    python bench/flow.py [--jobs N] [--concurrency C] [--rounds R] [--sleeps M] [--rated K]
"""

from __future__ import annotations

import argparse
import itertools
import signal
import statistics
import uuid
from typing import Any

from bench.service import delete_broker_entities, delete_keys, interrupt_once, stop_all
from bench.worker_throughput import (
    BIN,
    BROKER_URL,
    REDIS_URL,
    WorkerProcess,
    drain,
    our_probe,
    percentile,
    wait_until,
    worker_env,
)
from cli.arguments import positive
from orchestrator_core import Job, State, load_plugins
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import submit
from orchestrator_core.settings import load_settings
from orchestrator_core.store import JobStore

NEVER_BINDING = {"concurrency": 100_000, "rate_limit": "100000/s"}
SLEEP_SECONDS = 0.05
RATE = "50/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=positive, default=2000)
    parser.add_argument("--concurrency", type=positive, default=2)
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--sleeps", type=positive, default=100)
    parser.add_argument("--rated", type=positive, default=150)
    options = parser.parse_args()
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)

    prefix = f"bench-flow-{uuid.uuid4().hex[:8]}"
    settings = load_settings(prefix=prefix, redis_url=REDIS_URL, broker_url=BROKER_URL)
    plugins = load_plugins(allow=["demo"])
    store = JobStore.from_settings(settings, plugins=plugins)
    publisher = Publisher.from_settings(settings)
    env = worker_env(
        {
            "ORCHESTRATOR_PREFIX": prefix,
            "ORCHESTRATOR_PLUGINS": "demo",
            "ORCHESTRATOR_REDIS_URL": REDIS_URL,
            "ORCHESTRATOR_BROKER_URL": BROKER_URL,
        }
    )
    argv = [str(BIN / "orchestrator"), "--log-level", "WARNING", "worker"]
    argv += ["--concurrency", str(options.concurrency)]
    workers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess("our-worker", argv, env)
        workers.append(worker)
        return worker

    try:
        echo = plugins.get("demo.echo").job_type
        rates: dict[str, list[float]] = {"limits": [], "none": []}
        drain(start, our_probe(store, publisher, echo), 50, 2)  # warm-up
        stop_all(workers)
        for _ in range(options.rounds):
            for side in ("limits", "none"):
                store.override("demo.echo", NEVER_BINDING if side == "limits" else _cleared())
                probe = our_probe(store, publisher, echo)
                rates[side].append(drain(start, probe, options.jobs, 4).rate)
                stop_all(workers)
        store.override("demo.echo", _cleared())

        worker = start()
        worker.wait_ready()
        gaps = freed_to_running(store, publisher, plugins, options.sleeps)
        achieved = rate_accuracy(store, publisher, plugins, options.rated)
        stop_all(workers)

        limited, free = statistics.median(rates["limits"]), statistics.median(rates["none"])
        print(f"drain, {options.jobs} jobs, concurrency {options.concurrency}, medians of")
        print(f"{options.rounds} alternating rounds (jobs/s):")
        print(f"  limits that never bind   {limited:8.0f}   {_runs(rates['limits'])}")
        print(f"  no limits (baseline)     {free:8.0f}   {_runs(rates['none'])}")
        print(f"  ratio                    {limited / free:8.2f}   (target >= 0.9)")
        print(f"slot freed -> next RUNNING, concurrency 1, {len(gaps)} hand-overs (ms):")
        print(
            f"  p50 {percentile(gaps, 0.5):.1f}   p99 {percentile(gaps, 0.99):.1f}   "
            f"max {max(gaps):.1f}   (target p99 <= 100)"
        )
        configured = 50.0
        print(
            f"rate limit {RATE}, {options.rated} jobs: achieved {achieved:.2f}/s "
            f"({achieved / configured:.3f} of configured)"
        )
    finally:
        stop_all(workers)
        publisher.close()
        delete_keys(store.redis, prefix)
        queues = sorted({queue_name(store.keys, r.job_type) for r in plugins.job_types.values()})
        delete_broker_entities(
            BROKER_URL,
            [*queues, store.keys.dead_letter_queue],
            [store.keys.exchange, store.keys.dead_letter_exchange],
        )


def _cleared() -> dict[str, Any]:
    return {name: None for name in NEVER_BINDING}


def _runs(values: list[float]) -> str:
    return "(" + ", ".join(f"{value:.0f}" for value in values) + ")"


def _finished(store: JobStore, ids: list[str], timeout: float) -> list[Job]:
    def done() -> bool:
        return all(store.get(job_id).state is State.COMPLETED for job_id in ids)

    wait_until(done, f"{len(ids)} jobs", timeout, 0.05)
    return [store.get(job_id) for job_id in ids]


def freed_to_running(store: JobStore, publisher: Publisher, plugins: Any, jobs: int) -> list[float]:
    """Milliseconds from each job's finish to the next one's start, under concurrency 1."""
    sleep = plugins.get("demo.sleep").job_type
    store.override("demo.sleep", {"concurrency": 1})
    ids = [submit(store, publisher, sleep, {"seconds": SLEEP_SECONDS}).job.id for _ in range(jobs)]
    done = sorted(_finished(store, ids, 60 + jobs), key=lambda job: job.started_at or 0)
    store.override("demo.sleep", {"concurrency": None})
    gaps = []
    for before, after in itertools.pairwise(done):
        assert before.finished_at is not None
        assert after.started_at is not None
        gaps.append((after.started_at - before.finished_at).total_seconds() * 1000)
    return gaps


def rate_accuracy(store: JobStore, publisher: Publisher, plugins: Any, jobs: int) -> float:
    """Starts a second achieved under ``RATE``."""
    echo = plugins.get("demo.echo").job_type
    store.override("demo.echo", {"rate_limit": RATE})
    ids = [submit(store, publisher, echo, {"message": "rated"}).job.id for _ in range(jobs)]
    done = _finished(store, ids, 60 + jobs)
    store.override("demo.echo", {"rate_limit": None})
    starts = sorted(job.started_at.timestamp() for job in done if job.started_at is not None)
    return (len(starts) - 1) / (starts[-1] - starts[0])


if __name__ == "__main__":
    main()
