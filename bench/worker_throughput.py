"""End-to-end worker throughput, Redis round trips per job, and cancel latency.

Runs, one after the other and never at once (the figures share the machine's cores):

1. our worker (``orchestrator worker --concurrency C``) working through N ``demo.echo``
   jobs submitted from S threads, timed from the first submit until all N are
   COMPLETED; Redis ``INFO commandstats`` taken before and after gives the commands
   per job;
2. M ``demo.sleep`` jobs cancelled while RUNNING, timed from ``store.cancel`` until
   the job reads CANCELLED;
3. a fresh worker working off N jobs queued before it started (the worker side alone);
4. the baseline, both ways: plain Celery (``bench/raw_celery.py``) on the same broker
   with the same prefork concurrency and the same S submitting threads, N no-op tasks
   sent with ``apply_async`` and timed until every result is stored in Redis.

The throughput and drain measurements alternate between the sides for R rounds and
report medians, since a shared 2-core machine slows down in spells. Each side runs a
small warm-up first. Every Redis key, queue and exchange of the run
is deleted at the end, also on failure or Ctrl-C. Talks only to 127.0.0.1.

    python bench/worker_throughput.py [--jobs N] [--concurrency C] [--cancels M]
        [--submitters S] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from bench import cpu
from bench.raw_celery import TASK_NAME, make_app
from bench.service import (
    Service,
    delete_broker_entities,
    delete_keys,
    interrupt_once,
    step,
    stop_all,
)
from cli.arguments import positive
from orchestrator_core import State, load_plugins
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import submit
from orchestrator_core.job_type import JobType
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import CancelOutcome, JobStore, script

REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
BIN = Path(sys.executable).parent
WARMUP_JOBS = 50
WARMUP_CANCELS = 2
POLL_SECONDS = 0.005
"""How often the bench checks how many jobs have finished."""
CANCEL_POLL_SECONDS = 0.0005
RAW_POLL_WINDOW = 64
"""Oldest unconfirmed result keys checked per poll; tasks finish roughly in order."""
READY_SECONDS = 60.0
LEVELS = ("WARNING", "ERROR", "CRITICAL", "Traceback")
POLLS = ("exists", "info", "zcard")
"""Commands the bench itself sends to watch a run: never counted as the side's."""


@dataclass(frozen=True)
class Throughput:
    jobs: int
    submit_seconds: float
    total_seconds: float
    polls: int
    """Commands the bench itself sent to see how many jobs had finished."""

    @property
    def rate(self) -> float:
        return self.jobs / self.total_seconds

    @property
    def submit_rate(self) -> float:
        return self.jobs / self.submit_seconds


class Submitter(threading.Thread):
    """Calls ``send(i)`` for i in range(n) from ``threads`` threads (as concurrent clients
    would) and records when the first and last call ran.

    Stops early once ``halt`` is set, so an interrupted run creates nothing after its clean-up.
    """

    def __init__(self, send: Callable[[int], None], n: int, threads: int) -> None:
        super().__init__(name="submitter", daemon=True)
        self._send = send
        self._n = n
        self._threads = threads
        self.started = 0.0
        self.finished = 0.0
        self.error: BaseException | None = None
        self.begun = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        self.started = time.perf_counter()
        self.begun.set()
        clients = [
            threading.Thread(target=self._client, args=(k,), daemon=True)
            for k in range(self._threads)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        self.finished = time.perf_counter()

    def _client(self, first: int) -> None:
        try:
            for i in range(first, self._n, self._threads):
                if self.halt.is_set() or self.error is not None:
                    return
                self._send(i)
        except BaseException as exc:
            self.error = exc


class WorkerProcess(Service):
    """A worker (ours or raw Celery's); ready once its log says so."""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while "ready." not in self.text():
            self.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {READY_SECONDS:g} s:\n{self.tail()}")
            time.sleep(0.05)


def worker_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any ORCHESTRATOR_ or CELERY_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "CELERY_"))}
    return {**env, **extra}


def wait_until(done: Callable[[], bool], what: str, timeout: float, interval: float) -> float:
    """Call ``done`` every ``interval`` until it is true; returns when (perf_counter)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter()


def drain_timeout(jobs: int) -> float:
    return 60.0 + jobs * 0.05


def measure(
    send: Callable[[int], None], jobs: int, finished: Callable[[], int], submitters: int
) -> Throughput:
    """Submit ``jobs`` from ``submitters`` threads; poll ``finished()`` until it is ``jobs``."""
    polls = 0

    def done() -> bool:
        nonlocal polls
        polls += 1
        if submitter.error is not None:
            raise RuntimeError("submitting failed") from submitter.error
        return finished() >= jobs

    submitter = Submitter(send, jobs, submitters)
    submitter.start()
    submitter.begun.wait()
    try:
        ended = wait_until(done, f"{jobs} finished jobs", drain_timeout(jobs), POLL_SECONDS)
    finally:
        submitter.halt.set()
        # Bounded: every submit gives up within the broker's and Redis's timeouts.
        submitter.join(timeout=30)
    if submitter.error is not None:
        raise RuntimeError("submitting failed") from submitter.error
    return Throughput(
        jobs=jobs,
        submit_seconds=submitter.finished - submitter.started,
        total_seconds=ended - submitter.started,
        polls=polls,
    )


Probe = tuple[Callable[[int], None], Callable[[], int]]
"""``send(i)`` submits job i; ``finished()`` counts the jobs done since the probe was made."""


@dataclass(frozen=True)
class Drain:
    rate: float
    """Jobs/s."""
    cpu_ms: dict[str, float]
    """CPU milliseconds per job by process group (the worker's tree, Redis, RabbitMQ)."""


def drain(start: Callable[[], WorkerProcess], probe: Probe, jobs: int, submitters: int) -> Drain:
    """Jobs/s of a fresh worker working off ``jobs`` queued before it started, and the CPU
    each process group spent on them.

    The clock starts when the worker reports ready, so neither submitting nor the
    worker's start-up counts: this is the worker side alone.
    """
    send, finished = probe
    submitter = Submitter(send, jobs, submitters)
    submitter.start()
    submitter.join()
    if submitter.error is not None:
        raise RuntimeError("submitting failed") from submitter.error
    worker = start()
    worker.wait_ready()
    groups = cpu.Groups(trees={"worker": worker.process.pid}, programs=cpu.SERVICES)
    before = groups.read()
    began = time.perf_counter()
    ended = wait_until(
        lambda: finished() >= jobs, f"{jobs} drained jobs", drain_timeout(jobs), POLL_SECONDS
    )
    return Drain(jobs / (ended - began), cpu.per_job_ms(before, groups.read(), jobs))


def our_probe(store: JobStore, publisher: Publisher, echo: JobType) -> Probe:
    completed = store.keys.index_type_state("demo.echo", State.COMPLETED)
    before = int(store.redis.zcard(completed))

    def send(i: int) -> None:
        submit(store, publisher, echo, {"message": f"bench {i}"})

    return send, lambda: int(store.redis.zcard(completed)) - before


def ours(
    store: JobStore, publisher: Publisher, echo: JobType, jobs: int, submitters: int
) -> Throughput:
    send, finished = our_probe(store, publisher, echo)
    measured = measure(send, jobs, finished, submitters)
    return replace(measured, polls=measured.polls + 1)  # and the ZCARD that read `before`


def raw_probe(app: Any, poller: redis.Redis) -> Probe:
    """A task counts as done once its result key exists (oldest checked first)."""
    noop = app.tasks[TASK_NAME]
    keys: list[bytes] = []
    pending: list[bytes] = []
    seen = 0
    confirmed = 0

    def send(_: int) -> None:
        keys.append(app.backend.get_key_for_task(noop.apply_async().id))

    def finished() -> int:
        nonlocal pending, seen, confirmed
        sent = len(keys)
        pending.extend(keys[seen:sent])
        seen = sent
        while pending:
            window = pending[:RAW_POLL_WINDOW]
            with poller.pipeline(transaction=False) as pipe:
                for key in window:
                    pipe.exists(key)
                exists = pipe.execute()
            left = [key for key, found in zip(window, exists, strict=True) if not found]
            confirmed += len(window) - len(left)
            pending = left + pending[RAW_POLL_WINDOW:]
            if left:
                break  # the rest of the queue is younger still; look again next poll
        return confirmed

    return send, finished


def raw(app: Any, poller: redis.Redis, jobs: int, submitters: int) -> Throughput:
    send, finished = raw_probe(app, poller)
    return measure(send, jobs, finished, submitters)


def command_calls(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def script_commands() -> frozenset[str]:
    """The commands the store script can call: inside it, not round trips of their own."""
    source = script.source()
    return frozenset(name.lower() for name in re.findall(r"redis\.call\('(\w+)'", source))


def busy_strangers(client: redis.Redis, ours_names: tuple[str, ...], seconds: float) -> list[str]:
    """Other clients that sent a command within ``seconds``: their calls are in the stats too."""
    me = client.client_id()
    return [
        f"{c.get('name') or '-'}@{c['addr']} (last {c['cmd']})"
        for c in client.client_list()
        if int(c["id"]) != me
        and not c.get("name", "").startswith(ours_names)
        and int(c["idle"]) < seconds
        and c["cmd"] not in ("subscribe", "psubscribe")
    ]


def wait_state(store: JobStore, job_id: str, wanted: State, timeout: float) -> State:
    deadline = time.monotonic() + timeout
    while True:
        state = store.get(job_id).state
        if state is wanted:
            return state
        if state in (State.COMPLETED, State.FAILED, State.CANCELLED):
            raise RuntimeError(f"job {job_id} ended {state} while waiting for {wanted}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state} after {timeout:g} s")
        time.sleep(CANCEL_POLL_SECONDS)


def cancel_latency(
    store: JobStore, publisher: Publisher, sleep: JobType, settings: Settings
) -> float:
    """Seconds from ``store.cancel`` of a RUNNING cooperative job until it reads CANCELLED."""
    job = submit(store, publisher, sleep, {"seconds": 60, "steps": 1}).job
    wait_state(store, job.id, State.RUNNING, timeout=30)
    started = time.perf_counter()
    outcome = store.cancel(job.id).outcome
    if outcome is not CancelOutcome.REQUESTED:
        raise RuntimeError(f"cancel of running job {job.id} answered {outcome}")
    # Past a missed pub/sub message the lease renewal still finds the flag; allow for it.
    limit = settings.lease_seconds + settings.cancel_grace_seconds + 10
    wait_state(store, job.id, State.CANCELLED, timeout=limit)
    return time.perf_counter() - started


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def log_summary(worker: WorkerProcess) -> list[str]:
    lines = worker.text().splitlines()
    counts = {level: sum(level in line for line in lines) for level in LEVELS}
    found = ", ".join(f"{n} {level}" for level, n in counts.items() if n) or "no warnings or errors"
    report = [f"{worker.name} log: {len(lines)} lines, {found}"]
    flagged = [line for line in lines if any(level in line for level in LEVELS)]
    distinct = Counter(re.sub(r"[0-9a-f-]{36}", "<id>", line) for line in flagged)
    report += [f"    {n:5d} x {line[:150]}" for line, n in distinct.most_common(8)]
    return report


def per_job(calls: Counter[str], jobs: int) -> str:
    return "  ".join(f"{name} {n / jobs:.2f}" for name, n in calls.most_common()) or "none"


@dataclass(frozen=True)
class Commands:
    """Redis commands sent during our measured run, less the bench's own."""

    evalsha: int
    top_level: Counter[str]
    """Other commands sent by a client: each one a round trip (or part of a pipeline)."""
    in_script: Counter[str]
    """Commands the store script ran; commandstats counts them under their own names."""

    @property
    def total(self) -> int:
        return self.evalsha + sum(self.top_level.values()) + sum(self.in_script.values())

    @classmethod
    def between(cls, before: Counter[str], after: Counter[str], *, polls: int) -> Commands:
        # The bench's polls, and the INFO that took the first snapshot.
        delta = after - before - Counter({"zcard": polls, "info": 1})
        # Told apart by name: of the commands the store script runs, our Python code sends none
        # directly (PUBLISH, say, only ever comes from the script).
        inside = script_commands()
        top_level = Counter({n: c for n, c in delta.items() if n not in inside})
        in_script = Counter({n: c for n, c in delta.items() if n in inside})
        return cls(top_level.pop("evalsha", 0), top_level, in_script)


@dataclass(frozen=True)
class Figures:
    concurrency: int
    ours: list[Throughput]
    raw: list[Throughput]
    our_drain: list[Drain]
    raw_drain: list[Drain]
    """Jobs/s of a fresh worker working off a queued backlog: the worker side alone."""
    commands: Commands
    raw_commands: float
    """Redis commands per task of raw Celery (its result writes and what they need)."""
    cancels_ms: list[float]
    strangers: list[str]

    def summary(self) -> dict[str, Any]:
        """The figures another script (``bench/speed.py``) puts in its table."""
        jobs = self.ours[0].jobs
        order = ("worker", "redis", "rabbitmq")
        return {
            "throughput": statistics.median(m.rate for m in self.ours),
            "raw_throughput": statistics.median(t.rate for t in self.raw),
            "throughput_ratio": statistics.median(
                m.rate / t.rate for m, t in zip(self.ours, self.raw, strict=True)
            ),
            "drain": statistics.median(d.rate for d in self.our_drain),
            "raw_drain": statistics.median(d.rate for d in self.raw_drain),
            "drain_ratio": statistics.median(
                o.rate / r.rate for o, r in zip(self.our_drain, self.raw_drain, strict=True)
            ),
            "cpu_ms": {g: statistics.median(d.cpu_ms[g] for d in self.our_drain) for g in order},
            "raw_cpu_ms": {
                g: statistics.median(d.cpu_ms[g] for d in self.raw_drain) for g in order
            },
            "commands": self.commands.total / jobs,
            "raw_commands": self.raw_commands,
            "cancel_p99_ms": percentile(self.cancels_ms, 0.99),
        }


def measure_all(options: argparse.Namespace, run: Run, workers: list[WorkerProcess]) -> Figures:
    """The three measurements, each worker stopped before the next one starts."""
    jobs, concurrency = options.jobs, str(options.concurrency)
    echo, sleep = run.plugins.get("demo.echo").job_type, run.plugins.get("demo.sleep").job_type
    env = worker_env(
        {
            "ORCHESTRATOR_PREFIX": run.settings.prefix,
            "ORCHESTRATOR_PLUGINS": "demo",
            "ORCHESTRATOR_REDIS_URL": REDIS_URL,
            "ORCHESTRATOR_BROKER_URL": BROKER_URL,
        }
    )
    argv = [str(BIN / "orchestrator"), "--log-level", "INFO", "worker"]

    def start_ours() -> WorkerProcess:
        started = WorkerProcess("our-worker", [*argv, "--concurrency", concurrency], env)
        workers.append(started)
        return started

    raw_env = worker_env(
        {
            "BENCH_RAW_QUEUE": run.raw_queue,
            "BENCH_RAW_KEYPREFIX": f"{run.raw_prefix}:",
            "BENCH_RAW_BROKER_URL": BROKER_URL,
            "BENCH_RAW_REDIS_URL": REDIS_URL,
        }
    )
    raw_argv = [str(BIN / "celery"), "-A", "bench.raw_celery", "worker", "--pool", "prefork"]
    raw_argv += ["--concurrency", concurrency, "-Q", run.raw_queue, "-n", f"{run.raw_prefix}@%h"]
    raw_argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]

    def start_raw() -> WorkerProcess:
        started = WorkerProcess("raw-celery-worker", raw_argv, raw_env)
        workers.append(started)
        return started

    submitters = options.submitters
    worker, raw_worker = start_ours(), start_raw()
    worker.wait_ready()
    raw_worker.wait_ready()
    ours(run.store, run.publisher, echo, WARMUP_JOBS, submitters)
    raw(run.raw_app, run.client, WARMUP_JOBS, submitters)
    # The sides alternate, so a slow spell of the machine hits both rather than one.
    mine: list[Throughput] = []
    theirs: list[Throughput] = []
    before = after = raw_before = Counter[str]()
    strangers: list[str] = []
    raw_commands = 0.0
    for round_ in range(options.rounds):
        if round_ == 0:
            before = command_calls(run.client)
        mine.append(ours(run.store, run.publisher, echo, jobs, submitters))
        if round_ == 0:
            after = command_calls(run.client)
            strangers = busy_strangers(
                run.client, (run.settings.prefix,), mine[0].total_seconds + 1
            )
        if round_ == 0:
            raw_before = command_calls(run.client)
        theirs.append(raw(run.raw_app, run.client, jobs, submitters))
        if round_ == 0:
            # Less the bench's own polls (EXISTS) and the snapshot (INFO).
            raw_delta = command_calls(run.client) - raw_before
            raw_commands = sum(n for name, n in raw_delta.items() if name not in POLLS) / jobs
        print(
            f"round {round_ + 1}: ours {mine[-1].rate:6.1f} jobs/s, "
            f"raw celery {theirs[-1].rate:6.1f} jobs/s"
        )

    for _ in range(WARMUP_CANCELS):
        cancel_latency(run.store, run.publisher, sleep, run.settings)
    cancels = [
        cancel_latency(run.store, run.publisher, sleep, run.settings) * 1000
        for _ in range(options.cancels)
    ]
    worker.stop()
    raw_worker.stop()

    our_drains: list[Drain] = []
    raw_drains: list[Drain] = []
    for round_ in range(options.rounds):
        our_drains.append(
            drain(start_ours, our_probe(run.store, run.publisher, echo), jobs, submitters)
        )
        workers[-1].stop()
        raw_drains.append(drain(start_raw, raw_probe(run.raw_app, run.client), jobs, submitters))
        workers[-1].stop()
        print(
            f"drain {round_ + 1}: ours {our_drains[-1].rate:6.1f} jobs/s, "
            f"raw celery {raw_drains[-1].rate:6.1f} jobs/s"
        )
    commands = Commands.between(before, after, polls=mine[0].polls)
    return Figures(
        options.concurrency,
        mine,
        theirs,
        our_drains,
        raw_drains,
        commands,
        raw_commands,
        cancels,
        strangers,
    )


def report(figures: Figures) -> None:
    mine, theirs = figures.ours, figures.raw
    commands, cancels = figures.commands, figures.cancels_ms
    jobs = mine[0].jobs
    if figures.strangers:
        print("other Redis clients were busy during the measured run; command counts include")
        print("their commands: " + "; ".join(figures.strangers))
    print()
    print(f"Redis commands per job over {jobs} jobs (top level = round trips of our code):")
    print(f"  EVALSHA          {commands.evalsha / jobs:6.2f}   (every store operation)")
    print(f"  other top-level  {per_job(commands.top_level, jobs)}")
    inside = sum(commands.in_script.values())
    print(f"  inside the script{inside / jobs:6.2f}   (not round trips)")
    print(f"                   {per_job(commands.in_script, jobs)}")
    print()
    rounds = len(mine)
    print(f"medians of {rounds} alternating rounds (C={figures.concurrency}, N={jobs}):")
    side_by_side("throughput", [m.rate for m in mine], [t.rate for t in theirs])
    side_by_side(
        "drain only", [d.rate for d in figures.our_drain], [d.rate for d in figures.raw_drain]
    )
    order = ("worker", "redis", "rabbitmq")
    for side, drains in (("ours", figures.our_drain), ("raw celery", figures.raw_drain)):
        median = {g: statistics.median(d.cpu_ms[g] for d in drains) for g in order}
        print(f"  drain CPU ms/job, {side:10s} {cpu.describe(median, order)}")
    side_by_side("submit only", [m.submit_rate for m in mine], [t.submit_rate for t in theirs])
    others = f" + {per_job(commands.top_level, jobs)}" if commands.top_level else ""
    print(f"round trips  ours {commands.evalsha / jobs:.2f} EVALSHA/job{others}")
    print(f"raw celery   {figures.raw_commands:.2f} Redis commands per task")
    print(
        f"cancel       p50 {statistics.median(cancels):7.1f} ms   "
        f"p99 {percentile(cancels, 0.99):7.1f} ms   max {max(cancels):7.1f} ms"
        f"   (M={len(cancels)})"
    )
    slow = sorted(ms for ms in cancels if ms > 1000)
    if slow:
        shown = ", ".join(f"{ms:.0f}" for ms in slow[:10])
        print(f"             {len(slow)} of {len(cancels)} took over 1 s: {shown} ms")


def side_by_side(what: str, ours_rates: list[float], raw_rates: list[float]) -> None:
    """Median rates of both sides and the median of the per-round ratios."""
    ratios = [o / r for o, r in zip(ours_rates, raw_rates, strict=True)]
    print(
        f"{what:12s} ours {statistics.median(ours_rates):7.1f} jobs/s   "
        f"raw celery {statistics.median(raw_rates):7.1f} jobs/s   "
        f"ratio {statistics.median(ratios):.2f} (rounds {min(ratios):.2f}..{max(ratios):.2f})"
    )


class Run:
    """Names, clients and apps of one run; ``clean_up`` deletes everything it created."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8]
        prefix = f"bench-{self.id}"
        self.raw_prefix = f"{prefix}-raw"
        self.raw_queue = f"{self.raw_prefix}.noop"
        self.settings = load_settings(
            prefix=prefix, redis_url=REDIS_URL, broker_url=BROKER_URL, plugins=("demo",)
        )
        self.plugins = load_plugins(allow=["demo"])
        self.client = redis.Redis.from_url(REDIS_URL, client_name=f"{prefix}-bench")
        self.store = JobStore.from_settings(self.settings)
        self.publisher = Publisher.from_settings(self.settings)
        self.raw_app = make_app(
            queue=self.raw_queue,
            keyprefix=f"{self.raw_prefix}:",
            broker_url=BROKER_URL,
            redis_url=REDIS_URL,
        )

    def clean_up(self) -> None:
        keys = self.store.keys
        with step("closing clients"):
            self.publisher.close()
            self.raw_app.close()
            self.store.redis.close()
        for name in (keys.prefix, self.raw_prefix):
            with step(f"deleting Redis keys {name}:*"):
                delete_keys(self.client, name)
        with step("deleting queues and exchanges"):
            # The worker declares a queue for every job type it serves, not only those used.
            queues = {queue_name(keys, p.job_type) for p in self.plugins.job_types.values()}
            delete_broker_entities(
                BROKER_URL,
                sorted({*queues, keys.dead_letter_queue, self.raw_queue}),
                [keys.exchange, keys.dead_letter_exchange, self.raw_queue],
            )
        self.client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=positive, default=2000, help="jobs per side (default 2000)")
    parser.add_argument("--concurrency", type=positive, default=2, help="processes (default 2)")
    parser.add_argument("--cancels", type=positive, default=100, help="cancels timed (default 100)")
    parser.add_argument(
        "--submitters", type=positive, default=4, help="submitting threads (default 4)"
    )
    parser.add_argument(
        "--rounds", type=positive, default=3, help="alternating rounds per side (default 3)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' log files")
    parser.add_argument("--summary", type=Path, metavar="FILE", help="write the figures as JSON")
    options = parser.parse_args()
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)

    run = Run()
    workers: list[WorkerProcess] = []
    try:
        print(
            f"run {run.id}: {options.jobs} jobs, concurrency {options.concurrency}, "
            f"{options.cancels} cancels"
        )
        figures = measure_all(options, run, workers)
        print()
        for w in workers:
            print("\n".join(log_summary(w)))
        report(figures)
        if options.summary is not None:
            options.summary.write_text(json.dumps(figures.summary()), encoding="utf-8")
    finally:
        stop_all(workers, keep_logs=options.keep_logs)
        run.clean_up()


if __name__ == "__main__":
    main()
