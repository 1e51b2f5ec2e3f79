"""A chaos run: the whole system on loopback processes under a steady load, while a seeded
scheduler of faults kills, pauses and fails its parts over; then a checker, in the style
of Jepsen's total-queue, reads every job the API acknowledged and says what went wrong.

    python -m tests.chaos [--seed N] [--seconds S] [--rate R] [--replicated]
    python -m tests.chaos --soak [--seconds S] [--rate R] [--every E]   # memory, no faults

The deployment is two ``orchestrator api`` processes and three ``orchestrator worker``
processes on a key prefix and queues of the run's own, on the Redis and RabbitMQ a
``Topology`` gives (the machine's own, or a Sentinel-watched Redis and a RabbitMQ
cluster when the run starts them). The load offers ``rate`` submissions a second, open
loop, of no-op, sleeping, failing and to-be-cancelled jobs, each under an
``Idempotency-Key`` so that a client retrying on the other API after an error never
makes two jobs of one request. The faults: a worker killed (SIGKILL) and started again,
a worker paused (SIGSTOP) and resumed, an API process killed and started again, and
whatever the topology adds (a Redis failover, a RabbitMQ node stopped).

The report: faults injected, jobs acknowledged, lost (acknowledged, but unknown or not
finished by the horizon), stuck (not finished), double (two terminal entries in one
history), illegal (a history the state machine does not allow), 5xx answers to valid
requests outside the fault windows, and the windows in which submissions failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

if __package__ in (None, "", "tests"):  # run as a module: the test helpers are top-level
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import descendants
from cleanup import delete_broker_objects, delete_keys, job_queues
from processes import free_port, stop_group
from rabbitcluster import RabbitCluster
from redisserver import private_redis
from sentinels import sentinel_group

from orchestrator_core import JobNotFoundError, State, load_plugins
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.states import TERMINAL_STATES, TRANSITIONS
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
LEASE_SECONDS = 3.0
"""Short, so that a killed or paused worker's jobs are taken over within the run."""
HORIZON_SECONDS = 60.0
"""How long after the load every acknowledged job has to finish."""
SOAK_RETENTION_SECONDS = 60
FAULT_GRACE_SECONDS = 5.0
"""A failed request up to this long after a fault ended counts as the fault's."""


@dataclass
class Process:
    """One process of the deployment, started again and again under one name."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logs: Path
    ready: str | None = None
    """A line its log prints once it serves (None: it serves when it starts)."""
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ready is not None and self.ready not in self.log.read_text(errors="replace"):
            assert self.popen is not None
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=20)

    def stop(self) -> None:
        if self.popen is not None:
            self.signal(signal.SIGCONT)
            stop_group(self.popen)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Topology:
    """Where Redis and RabbitMQ are, and the faults they add to the run's.

    The default is the machine's own Redis and RabbitMQ, which the run does not fail
    over; a topology that starts replicated ones adds its failovers to ``faults``.
    """

    env: dict[str, str] = field(default_factory=dict)
    """The ORCHESTRATOR_ settings that point at them."""
    faults: dict[str, Callable[[], None]] = field(default_factory=dict)


@dataclass
class Deployment:
    """Two APIs and three workers under ``settings.prefix``."""

    settings: Settings
    topology: Topology
    logs: Path
    apis: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        env.update(
            ORCHESTRATOR_PREFIX=self.settings.prefix,
            ORCHESTRATOR_PLUGINS="demo",
            ORCHESTRATOR_LEASE_SECONDS=str(LEASE_SECONDS),
            ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2",
            ORCHESTRATOR_PREFETCH_MULTIPLIER="2",
            **self.topology.env,
        )
        for n in range(2):
            argv = [str(ORCHESTRATOR), "api", "--port", str(free_port())]
            self.apis.append(Process(f"api-{n}", argv, env, self.logs))
        for n in range(3):
            argv = [str(ORCHESTRATOR), "--log-level", "INFO", "worker", "--concurrency", "2"]
            self.workers.append(Process(f"worker-{n}", argv, env, self.logs, ready=" ready."))

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{api.argv[-1]}" for api in self.apis]

    def start(self) -> None:
        for process in (*self.apis, *self.workers):
            process.start()
        for worker in self.workers:
            worker.wait_ready()
        for url in self.urls:
            wait_answering(url)

    def stop(self) -> None:
        for process in (*self.apis, *self.workers):
            with contextlib.suppress(Exception):
                process.stop()


def wait_answering(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API at {url} did not come up")
        time.sleep(0.1)


@contextlib.contextmanager
def replicated(directory: Path, *, seed: int) -> Iterator[tuple[Topology, dict[str, Any]]]:
    """Redis as a primary, two replicas and three Sentinels, and a three-node RabbitMQ
    cluster with quorum queues, all on loopback: a topology that fails them over. Yields
    it with the settings that reach them."""
    rng = random.Random(seed + 1)
    (directory / "redis").mkdir()
    with sentinel_group(directory / "redis", master="chaos", min_replicas=1) as group:
        cluster = RabbitCluster(directory / "rabbit")
        cluster.start()
        try:
            reach: dict[str, Any] = {
                "redis_url": "redis://127.0.0.1/0",
                "redis_sentinels": ",".join(group.addresses),
                "redis_sentinel_master": group.master,
                "broker_url": cluster.url,
                "queue_type": "quorum",
                # Acknowledged once both replicas have it: whichever the failover promotes
                # has every acknowledged write, and the old primary, which keeps taking
                # writes until the Sentinels demote it, can no longer acknowledge any
                # (with one, the replica still following it would, and then resync).
                "redis_wait_replicas": 2,
            }

            def fail_redis_over() -> None:
                group.failover()
                group.wait_settled()

            def stop_a_broker_node() -> None:
                node = rng.choice(cluster.running())
                node.stop()
                time.sleep(rng.uniform(1.0, 3.0))
                cluster.heal()

            env = {f"ORCHESTRATOR_{name.upper()}": str(value) for name, value in reach.items()}
            faults = {
                "fail the Redis primary over": fail_redis_over,
                "stop a RabbitMQ node": stop_a_broker_node,
            }
            yield Topology(env=env, faults=faults), reach
        finally:
            cluster.stop()


# --- the load --------------------------------------------------------------------------

KINDS = ("noop", "sleep", "fail", "cancel")
WEIGHTS = (55, 20, 15, 10)


def body(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "noop":
        return {"type": "demo.echo", "payload": {"message": "chaos"}}
    if kind == "sleep":
        return {"type": "demo.sleep", "payload": {"seconds": rng.uniform(0.05, 0.5), "steps": 2}}
    if kind == "fail":
        return {"type": "demo.fail", "payload": {"times": rng.choice((1, 2, 9))}}
    return {"type": "demo.sleep", "payload": {"seconds": 3.0, "steps": 30}}


@dataclass
class Ack:
    job_id: str
    kind: str
    at: float


@dataclass
class Refusal:
    at: float
    what: str
    server_error: bool
    """A 5xx answer (as opposed to no answer at all)."""


@dataclass
class Load:
    """What the clients saw."""

    acks: list[Ack] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    cancels: int = 0


async def offer(urls: list[str], *, rate: float, seconds: float, seed: int) -> Load:
    """Submit ``rate`` jobs a second for ``seconds``, open loop, across the APIs."""
    rng = random.Random(seed)
    load = Load()
    began = time.monotonic()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        tasks = []
        total = int(rate * seconds)
        for i in range(total):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            kind = rng.choices(KINDS, WEIGHTS)[0]
            tasks.append(
                asyncio.create_task(
                    submit_one(client, urls, i, kind, body(kind, rng), rng.random(), load)
                )
            )
        await asyncio.gather(*tasks)
    return load


async def submit_one(
    client: httpx.AsyncClient,
    urls: list[str],
    i: int,
    kind: str,
    job: dict[str, Any],
    luck: float,
    load: Load,
) -> None:
    """One client's request: tried on each API in turn, under one Idempotency-Key, until
    one answers or half a minute passes (a client rides out an outage)."""
    headers = {"Idempotency-Key": f"chaos-{i}"}
    deadline = time.monotonic() + 30
    attempt = 0
    while True:
        url = urls[(i + attempt) % len(urls)]
        attempt += 1
        try:
            answer = await client.post(f"{url}/jobs", json=job, headers=headers)
        except httpx.TransportError as exc:
            load.refusals.append(Refusal(time.monotonic(), type(exc).__name__, False))
        else:
            if answer.status_code in (200, 201):
                job_id = answer.json()["id"]
                load.acks.append(Ack(job_id, kind, time.monotonic()))
                if kind == "cancel":
                    await asyncio.sleep(0.2 + luck)
                    await cancel_one(client, urls, i, job_id, load)
                return
            if answer.status_code < 500:
                raise AssertionError(
                    f"a valid request was refused: {answer.status_code} {answer.text}"
                )
            load.refusals.append(Refusal(time.monotonic(), str(answer.status_code), True))
        if time.monotonic() > deadline:
            return  # never acknowledged: the checker does not expect it
        await asyncio.sleep(0.2)


async def cancel_one(
    client: httpx.AsyncClient, urls: list[str], i: int, job_id: str, load: Load
) -> None:
    for attempt in range(20):
        url = urls[(i + attempt) % len(urls)]
        try:
            answer = await client.delete(f"{url}/jobs/{job_id}")
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        if answer.status_code in (202, 409):
            load.cancels += 1
            return
        await asyncio.sleep(0.2)


# --- the faults ------------------------------------------------------------------------


@dataclass
class Window:
    fault: str
    began: float
    ended: float


class Faults:
    """Injects one fault every ``every`` seconds (jittered), in an order the seeded rng
    chooses, from a thread of its own, until stopped; records when each lasted."""

    def __init__(self, deployment: Deployment, *, seed: int, every: float = 3.0) -> None:
        self.deployment = deployment
        self.rng = random.Random(seed)
        self.every = every
        self.windows: list[Window] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self.kinds: dict[str, Callable[[], None]] = {
            "kill a worker": self.kill_worker,
            "pause a worker": self.pause_worker,
            "kill an API": self.kill_api,
            **deployment.topology.faults,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        # Dealt from a deck of every kind, so that a run of as many faults as there are
        # kinds injects each of them: the topology's failovers first (the rarest and
        # slowest), then the processes' faults, each group in a seeded order.
        deck: list[str] = []
        while not self._stop.wait(self.rng.uniform(0.5, 1.5) * self.every):
            if not deck:
                failovers = sorted(self.deployment.topology.faults)
                processes = sorted(set(self.kinds) - set(failovers))
                self.rng.shuffle(failovers)
                self.rng.shuffle(processes)
                deck = [*reversed(processes), *reversed(failovers)]
            name = deck.pop()
            began = time.monotonic()
            try:
                self.kinds[name]()
            except Exception as exc:  # a fault that could not be injected is reported
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            self.windows.append(Window(name, began, time.monotonic()))

    def kill_worker(self) -> None:
        worker = self.rng.choice(self.deployment.workers)
        worker.kill()
        time.sleep(self.rng.uniform(0.5, 1.5))
        worker.start()
        worker.wait_ready()

    def pause_worker(self) -> None:
        worker = self.rng.choice(self.deployment.workers)
        worker.signal(signal.SIGSTOP)
        time.sleep(self.rng.uniform(1.0, 2.0 * LEASE_SECONDS))  # past its lease, at times
        worker.signal(signal.SIGCONT)

    def kill_api(self) -> None:
        api = self.rng.choice(self.deployment.apis)
        api.kill()
        time.sleep(self.rng.uniform(0.2, 1.0))
        api.start()
        wait_answering(self.deployment.urls[self.deployment.apis.index(api)])


# --- the checker -----------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    faults: dict[str, int]
    fault_errors: list[str]
    acknowledged: int
    cancels: int
    outcomes: dict[str, int]
    lost: list[str]
    stuck: list[str]
    double: list[str]
    illegal: list[str]
    server_errors_outside_faults: int
    unavailable: list[tuple[float, float]]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.double or self.illegal)

    def lines(self) -> list[str]:
        windows = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in self.unavailable) or "none"
        return [
            f"chaos run, seed {self.seed}",
            "faults injected: "
            + (", ".join(f"{name} x{n}" for name, n in sorted(self.faults.items())) or "none"),
            f"faults that could not be injected: {len(self.fault_errors)}",
            f"jobs acknowledged: {self.acknowledged} (cancels acknowledged: {self.cancels})",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            f"lost: {len(self.lost)}  stuck: {len(self.stuck)}  double: {len(self.double)}  "
            f"illegal: {len(self.illegal)}",
            f"5xx to valid requests outside the fault windows: {self.server_errors_outside_faults}",
            f"windows in which submissions failed (from the start of the load): {windows}",
            *(f"  lost {job}" for job in self.lost[:10]),
            *(f"  stuck {job}" for job in self.stuck[:10]),
            *(f"  double {job}" for job in self.double[:10]),
            *(f"  illegal {job}" for job in self.illegal[:10]),
        ]


def check(
    store: JobStore, load: Load, faults: Faults, *, seed: int, began: float, horizon: float
) -> Report:
    """Read every acknowledged job, once all are finished or the horizon passes."""
    ids = {ack.job_id for ack in load.acks}
    deadline = time.monotonic() + horizon
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            with contextlib.suppress(JobNotFoundError):
                if store.get(job_id).state in TERMINAL_STATES:
                    pending.discard(job_id)
        if pending:
            time.sleep(0.5)
    lost, stuck, double, illegal = [], [], [], []
    outcomes: dict[str, int] = {}
    for job_id in sorted(ids):
        try:
            job = store.get(job_id)
        except JobNotFoundError:
            lost.append(job_id)
            continue
        outcomes[job.state.value] = outcomes.get(job.state.value, 0) + 1
        if job.state not in TERMINAL_STATES:
            stuck.append(f"{job_id} {job.state.value}")
        states = [entry.state for entry in job.history]
        if sum(1 for state in states if state in TERMINAL_STATES) > 1:
            double.append(f"{job_id} {[s.value for s in states]}")
        moves_ok = states[:1] == [State.CREATED] and all(
            after in TRANSITIONS[before] for before, after in itertools.pairwise(states)
        )
        if not moves_ok:
            illegal.append(f"{job_id} {[s.value for s in states]}")
    counted: dict[str, int] = {}
    for window in faults.windows:
        counted[window.fault] = counted.get(window.fault, 0) + 1

    def during_fault(at: float) -> bool:
        return any(w.began - 0.5 <= at <= w.ended + FAULT_GRACE_SECONDS for w in faults.windows)

    outside = sum(1 for r in load.refusals if r.server_error and not during_fault(r.at))
    return Report(
        seed=seed,
        faults=counted,
        fault_errors=faults.errors,
        acknowledged=len(ids),
        cancels=load.cancels,
        outcomes=outcomes,
        lost=lost,
        stuck=stuck,
        double=double,
        illegal=illegal,
        server_errors_outside_faults=outside,
        unavailable=_windows([r.at - began for r in load.refusals]),
    )


def _windows(instants: list[float], gap: float = 1.0) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for at in sorted(instants):
        if spans and at - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], at)
        else:
            spans.append((at, at))
    return spans


# --- the soak --------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (a worker's pool), MiB."""
    total = 0
    for each in {pid, *descendants(pid)}:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


ID_PART = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,}")
SIZES = {"hash": "hlen", "zset": "zcard", "set": "scard", "list": "llen", "stream": "xlen"}


def census(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Every key of the (private) server by shape, ids written ``*``: how many keys of each
    shape, and how many elements (fields, members, entries) they hold together."""
    shapes: dict[str, tuple[int, int]] = {}
    names = [str(name) for name in client.scan_iter(count=1000)]
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.type(name)
        kinds = [str(kind) for kind in pipe.execute()]
    with client.pipeline(transaction=False) as pipe:
        for name, kind in zip(names, kinds, strict=True):
            getattr(pipe, SIZES[kind])(name) if kind in SIZES else pipe.strlen(name)
        sizes = pipe.execute()
    for name, size in zip(names, sizes, strict=True):
        shape = ID_PART.sub("*", name)
        keys, elements = shapes.get(shape, (0, 0))
        shapes[shape] = (keys + 1, elements + int(size or 0))
    return shapes


def sample_memory(
    deployment: Deployment,
    store: JobStore,
    stop: threading.Event,
    every: float,
    censuses: list[dict[str, tuple[int, int]]],
) -> list[dict[str, float]]:
    """Every ``every`` seconds until ``stop``: each process's RSS and Redis's used_memory,
    and a census of the keys into ``censuses``."""
    samples: list[dict[str, float]] = []
    began = time.monotonic()
    while True:
        sample = {"t": time.monotonic() - began}
        for process in (*deployment.apis, *deployment.workers):
            if process.popen is not None:
                sample[process.name] = rss_mib(process.popen.pid)
        sample["redis used_memory"] = int(store.redis.info("memory")["used_memory"]) / 2**20
        samples.append(sample)
        censuses.append(census(store.redis))
        if stop.wait(every):
            return samples


def growth(censuses: list[dict[str, tuple[int, int]]]) -> list[str]:
    """The key shapes whose elements grew from the middle census to the last: what a steady
    load should leave flat."""
    if len(censuses) < 2:
        return []
    middle, last = censuses[len(censuses) // 2], censuses[-1]
    rows = []
    for shape in sorted(set(middle) | set(last)):
        before, after = middle.get(shape, (0, 0)), last.get(shape, (0, 0))
        rows.append(
            f"{shape:<60} keys {before[0]:>7} -> {after[0]:>7}"
            f"   elements {before[1]:>8} -> {after[1]:>8}"
        )
    return rows


def soak(settings: Settings, logs: Path, *, seconds: float, rate: float, every: float) -> str:
    """The load without faults for ``seconds``, on a Redis of its own (``used_memory`` is
    the whole server's); returns the memory table (MiB)."""
    with private_redis(logs) as url:
        settings = load_settings(prefix=settings.prefix, redis_url=url)
        return _soak(settings, logs, seconds=seconds, rate=rate, every=every)


def _soak(settings: Settings, logs: Path, *, seconds: float, rate: float, every: float) -> str:
    store = JobStore.from_settings(settings)
    # Finished jobs are deleted after a minute, so a steady load finds the store's steady size.
    kept = Topology(
        env={
            "ORCHESTRATOR_RETENTION_SECONDS": str(SOAK_RETENTION_SECONDS),
            "ORCHESTRATOR_REDIS_URL": settings.redis_url,
        }
    )
    with deployed(settings, kept, logs) as deployment:
        stop = threading.Event()
        samples: list[dict[str, float]] = []
        censuses: list[dict[str, tuple[int, int]]] = []
        sampler = threading.Thread(
            target=lambda: samples.extend(sample_memory(deployment, store, stop, every, censuses)),
            daemon=True,
        )
        sampler.start()
        try:
            load = asyncio.run(offer(deployment.urls, rate=rate, seconds=seconds, seed=0))
        finally:
            stop.set()
            sampler.join()
    names = [name for name in samples[0] if name != "t"]
    rows = ["  t (s)  " + "  ".join(f"{name:>17}" for name in names)]
    rows += [
        f"{sample['t']:7.0f}  " + "  ".join(f"{sample.get(name, 0):17.1f}" for name in names)
        for sample in samples
    ]
    rows.append(f"jobs acknowledged: {len(load.acks)}; failed requests: {len(load.refusals)}")
    rows.append("keys by shape, from the middle sample to the last:")
    rows += growth(censuses)
    return "\n".join(rows)


# --- the run ---------------------------------------------------------------------------


@contextlib.contextmanager
def deployed(settings: Settings, topology: Topology, logs: Path) -> Iterator[Deployment]:
    deployment = Deployment(settings, topology, logs)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def run(
    settings: Settings,
    topology: Topology,
    logs: Path,
    *,
    seed: int,
    seconds: float,
    rate: float,
) -> Report:
    """One chaos run: deploy, load and fault for ``seconds``, then check."""
    store = JobStore.from_settings(settings)
    with deployed(settings, topology, logs) as deployment:
        faults = Faults(deployment, seed=seed)
        began = time.monotonic()
        faults.start()
        try:
            load = asyncio.run(offer(deployment.urls, rate=rate, seconds=seconds, seed=seed))
        finally:
            faults.stop()
        return check(store, load, faults, seed=seed, began=began, horizon=HORIZON_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument(
        "--soak", action="store_true", help="no faults: report memory over time instead"
    )
    parser.add_argument("--every", type=float, default=60.0, help="soak: seconds per sample")
    parser.add_argument(
        "--replicated",
        action="store_true",
        help="start Redis under Sentinel and a RabbitMQ cluster on loopback, and fail them over",
    )
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(10**6)
    settings = load_settings(prefix=f"chaos-{uuid.uuid4().hex[:8]}")
    logs = Path(tempfile.mkdtemp(prefix=f"{settings.prefix}-"))
    if options.soak:
        try:
            table = soak(
                settings, logs, seconds=options.seconds, rate=options.rate, every=options.every
            )
        finally:
            clean_up(settings)
        print(f"soak, {options.seconds:.0f} s at {options.rate:.0f} jobs/s, memory in MiB")
        print(table)
        return 0
    if options.replicated:
        with replicated(logs, seed=seed) as (topology, reach):
            settings = load_settings(prefix=settings.prefix, **reach)
            report = run(
                settings, topology, logs, seed=seed, seconds=options.seconds, rate=options.rate
            )
    else:
        try:
            report = run(
                settings, Topology(), logs, seed=seed, seconds=options.seconds, rate=options.rate
            )
        finally:
            clean_up(settings)
    print("\n".join(report.lines()))
    print(f"logs: {logs}")
    return 0 if report.ok else 1


def clean_up(settings: Settings) -> None:
    """Delete the run's keys, queues and exchanges."""
    client = connect_redis(settings)
    delete_keys(client, settings.prefix)
    client.close()
    queues = job_queues(settings.prefix, load_plugins(allow=["demo"]))
    delete_broker_objects(settings.broker_url, settings.prefix, queues)


if __name__ == "__main__":
    sys.exit(main())
