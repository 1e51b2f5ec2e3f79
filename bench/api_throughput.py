"""Submission throughput: ``POST /jobs`` beside a do-nothing POST served the same way, and
``POST /jobs/batch``.

Starts the control plane (``orchestrator api --workers N``) under a unique prefix and,
as the baseline, ``bench/noop_api.py`` (a FastAPI POST that reads its JSON and answers)
on the same server with the same options and process count. Both are driven from C
concurrent clients on loopback by ``wrk`` (a C load generator, which leaves the CPU
to the servers), alternating for R rounds after a warm-up, and the medians are
reported with each server's CPU per request. No worker runs: the jobs stay CREATED.
Then B clients send ``POST /jobs/batch`` of 500 jobs each, for the batch endpoint's
jobs per second and the CPU each job cost the API, Redis and RabbitMQ. Every Redis
key, queue and exchange of the run is deleted at the end, also on failure or Ctrl-C.
Talks only to 127.0.0.1.

    python bench/api_throughput.py [--seconds S] [--connections C] [--rounds R]
        [--api-workers N] [--batch-clients B] [--summary FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import redis

from bench import cpu
from bench.service import (
    Service,
    delete_broker_entities,
    delete_keys,
    interrupt_once,
    step,
    stop_all,
)
from cli.arguments import positive
from orchestrator_core import load_plugins
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.store.keys import Keys

HOST = "127.0.0.1"
REDIS_URL = f"redis://{HOST}:6379/0"
BROKER_URL = f"amqp://guest:guest@{HOST}:5672//"
BIN = Path(sys.executable).parent
BODY = json.dumps({"type": "demo.echo", "payload": {"message": "x"}})
BATCH = 500
WRK_THREADS = 2
WRK_TIMEOUT = "10s"
"""Past wrk's default of 2 s, so a slow answer counts in the latencies, not as an error."""
WARMUP_SECONDS = 2
READY_SECONDS = 60.0
TARGET_RATE = 1000.0
TARGET_P99_MS = 100.0
TARGET_RATIO = 0.5
TARGET_BATCH_RATE = 10_000.0
LEVELS = ("WARNING", "ERROR", "CRITICAL", "Traceback")

POST_SCRIPT = f"""\
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Sample:
    """One load run against one endpoint, and what its server spent on it."""

    rate: float
    """Responses per second."""
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    """Answers outside 2xx and 3xx."""
    errors: int
    """Connect, read, write errors and timeouts: requests that got no answer."""
    cpu_ms: float = 0.0
    """CPU milliseconds of the server's processes per answered request."""


class Server(Service):
    """A uvicorn server on a loopback port; ready once ``probe`` answers."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, probe: str
    ) -> None:
        super().__init__(name, argv, env)
        self.port = port
        self.probe = probe

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while True:
                self.check_running()
                with contextlib.suppress(httpx.TransportError):
                    if client.post(self.probe, content=BODY, headers=JSON).status_code < 300:
                        return
                if time.monotonic() > deadline:
                    late = f"{self.name} not ready in {READY_SECONDS:g} s"
                    raise RuntimeError(f"{late}:\n{self.tail()}")
                time.sleep(0.1)


JSON = {"Content-Type": "application/json"}


def api_server(prefix: str, workers: int) -> Server:
    port = free_port()
    argv = [str(BIN / "orchestrator"), "--log-level", "WARNING", "api"]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    env = {
        **{k: v for k, v in environ().items() if not k.startswith("ORCHESTRATOR_")},
        "ORCHESTRATOR_PREFIX": prefix,
        "ORCHESTRATOR_PLUGINS": "demo",
        "ORCHESTRATOR_REDIS_URL": REDIS_URL,
        "ORCHESTRATOR_BROKER_URL": BROKER_URL,
        "ORCHESTRATOR_MAX_BODY_BYTES": str(4 * 1024 * 1024),
    }
    return Server("bench-api", argv, env, port, "/jobs")


def noop_server(workers: int) -> Server:
    """The do-nothing POST, served as ``orchestrator api`` serves the API."""
    port = free_port()
    argv = [str(BIN / "uvicorn"), "bench.noop_api:app", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    argv += ["--timeout-keep-alive", "5"]
    return Server("bench-noop", argv, environ(), port, "/noop")


def environ() -> dict[str, str]:
    return dict(os.environ)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * UNITS_MS[match[2]]


def parse_wrk(output: str) -> Sample:
    """The figures of wrk's ``--latency`` report."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no {pattern!r} in wrk's output:\n{output}")
        return match

    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Sample(
        rate=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=parse_ms(find(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=parse_ms(find(r"^\s+99%\s+(\S+)")[1]),
        requests=int(find(r"^\s+(\d+) requests in")[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )


class Load:
    """wrk's POST of the submission body, at C connections, against one server."""

    def __init__(self, connections: int, script_dir: Path) -> None:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise SystemExit(
                "wrk is not installed (Debian's package wrk): a Python load generator would "
                "share the cores with the servers and measure itself"
            )
        self.wrk = wrk
        self.connections = connections
        self.script = script_dir / "post.lua"
        self.script.write_text(POST_SCRIPT, encoding="utf-8")

    @property
    def description(self) -> str:
        threads = min(WRK_THREADS, self.connections)
        return f"wrk ({self.wrk}, {threads} threads, {self.connections} connections)"

    def run(self, server: Server, path: str, seconds: int) -> Sample:
        argv = [self.wrk, f"-t{min(WRK_THREADS, self.connections)}", f"-c{self.connections}"]
        argv += [f"-d{seconds}s", "--latency", "--timeout", WRK_TIMEOUT, "-s", str(self.script)]
        groups = cpu.Groups(trees={"server": server.process.pid}, programs={})
        before = groups.read()
        done = subprocess.run(
            [*argv, server.base_url + path],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=seconds + 60,
            check=False,
        )
        used = groups.read()["server"] - before["server"]
        if done.returncode != 0:
            raise RuntimeError(f"wrk exited {done.returncode}:\n{done.stdout}{done.stderr}")
        sample = parse_wrk(done.stdout)
        answered = max(1, sample.requests - sample.non_2xx)
        return Sample(**{**asdict(sample), "cpu_ms": used * 1000 / answered})


@dataclass(frozen=True)
class Batches:
    jobs_per_second: float
    jobs: int
    cpu_ms: dict[str, float]
    """CPU milliseconds per job: the API's processes, Redis, RabbitMQ."""


def batch_load(api: Server, clients: int, seconds: int) -> Batches:
    """``clients`` clients sending ``POST /jobs/batch`` of 500 jobs, each its next once
    answered, for ``seconds``."""
    body = json.dumps(
        {"jobs": [{"type": "demo.echo", "payload": {"message": f"m{n}"}} for n in range(BATCH)]}
    )
    groups = cpu.Groups(trees={"api": api.process.pid}, programs=cpu.SERVICES)

    async def run() -> tuple[int, float, dict[str, float]]:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=60, trust_env=False) as http:
            sent = 0

            async def client(deadline: float) -> None:
                nonlocal sent
                while time.monotonic() < deadline:
                    response = await http.post("/jobs/batch", content=body, headers=JSON)
                    if response.status_code != 201:
                        answer = f"{response.status_code}: {response.text[:300]}"
                        raise RuntimeError(f"a batch was answered {answer}")
                    sent += BATCH

            await client(time.monotonic() + WARMUP_SECONDS)
            sent = 0
            before, started = groups.read(), time.monotonic()
            await asyncio.gather(*(client(started + seconds) for _ in range(clients)))
            elapsed = time.monotonic() - started
            return sent, elapsed, cpu.per_job_ms(before, groups.read(), sent)

    jobs, elapsed, used = asyncio.run(run())
    return Batches(jobs / elapsed, jobs, used)


@dataclass(frozen=True)
class Figures:
    post: list[Sample]
    noop: list[Sample]
    batches: Batches
    workers: int
    connections: int


def measure(options: argparse.Namespace, api: Server, noop: Server, load: Load) -> Figures:
    load.run(noop, "/noop", WARMUP_SECONDS)
    load.run(api, "/jobs", WARMUP_SECONDS)
    posts: list[Sample] = []
    noops: list[Sample] = []
    for round_ in range(options.rounds):
        noops.append(load.run(noop, "/noop", options.seconds))
        posts.append(load.run(api, "/jobs", options.seconds))
        print(
            f"round {round_ + 1}: do-nothing POST {noops[-1].rate:7.0f} req/s "
            f"p99 {noops[-1].p99_ms:6.1f} ms   POST /jobs {posts[-1].rate:7.0f} req/s "
            f"p99 {posts[-1].p99_ms:6.1f} ms   ratio {posts[-1].rate / noops[-1].rate:.2f}",
            flush=True,
        )
        for server in (api, noop):
            server.check_running()
    batches = batch_load(api, options.batch_clients, options.seconds)
    print(f"batches: {batches.jobs_per_second:7.0f} jobs/s ({batches.jobs} jobs)", flush=True)
    return Figures(posts, noops, batches, options.api_workers, options.connections)


def median(samples: list[Sample], get: Callable[[Sample], float]) -> float:
    return statistics.median(get(s) for s in samples)


def summary(figures: Figures) -> dict[str, float]:
    """The figures another script (``bench/speed.py``) puts in its table."""
    post, noop = figures.post, figures.noop
    return {
        "post_rate": median(post, lambda s: s.rate),
        "post_p99_ms": median(post, lambda s: s.p99_ms),
        "post_cpu_ms": median(post, lambda s: s.cpu_ms),
        "noop_rate": median(noop, lambda s: s.rate),
        "noop_p99_ms": median(noop, lambda s: s.p99_ms),
        "noop_cpu_ms": median(noop, lambda s: s.cpu_ms),
        "ratio": statistics.median(p.rate / n.rate for p, n in zip(post, noop, strict=True)),
        "batch_rate": figures.batches.jobs_per_second,
        "batch_cpu_ms": sum(figures.batches.cpu_ms.values()),
        "workers": figures.workers,
    }


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(figures: Figures) -> None:
    f = summary(figures)
    post, noop = figures.post, figures.noop
    print()
    print(
        f"medians of {len(post)} alternating rounds, {figures.connections} connections, "
        f"{figures.workers} server process(es) each:"
    )
    print(
        f"POST /jobs        {f['post_rate']:7.0f} req/s  p99 {f['post_p99_ms']:6.1f} ms"
        f"  {f['post_cpu_ms']:.3f} ms CPU/request   targets >= {TARGET_RATE:g} req/s: "
        f"{verdict(f['post_rate'] >= TARGET_RATE)}, p99 <= {TARGET_P99_MS:g} ms: "
        f"{verdict(f['post_p99_ms'] <= TARGET_P99_MS)}"
    )
    print(
        f"do-nothing POST   {f['noop_rate']:7.0f} req/s  p99 {f['noop_p99_ms']:6.1f} ms"
        f"  {f['noop_cpu_ms']:.3f} ms CPU/request   (the ceiling)"
    )
    ratios = [p.rate / n.rate for p, n in zip(post, noop, strict=True)]
    print(
        f"ratio {f['ratio']:.2f} (rounds {min(ratios):.2f}..{max(ratios):.2f})   "
        f"target >= {TARGET_RATIO:.2f}: {verdict(f['ratio'] >= TARGET_RATIO)}"
    )
    batches = figures.batches
    print(
        f"POST /jobs/batch  {batches.jobs_per_second:7.0f} jobs/s (batches of {BATCH})   "
        f"CPU ms/job {cpu.describe(batches.cpu_ms, ('api', 'redis', 'rabbitmq'))}   "
        f"target >= {TARGET_BATCH_RATE:g}: {verdict(batches.jobs_per_second >= TARGET_BATCH_RATE)}"
    )
    every = [*post, *noop]
    print(
        f"non-2xx: {sum(s.non_2xx for s in every)}; no answer (socket errors, timeouts): "
        f"{sum(s.errors for s in every)}"
    )


def log_summary(server: Server) -> str:
    lines = server.text().splitlines()
    counts = {level: sum(level in text for text in lines) for level in LEVELS}
    found = ", ".join(f"{n} {level}" for level, n in counts.items() if n) or "no warnings or errors"
    return f"{server.name} log: {len(lines)} lines, {found}"


def clean_up(keys: Keys, client: redis.Redis) -> None:
    with step(f"deleting Redis keys {keys.pattern}"):
        delete_keys(client, keys.prefix)
    with step("deleting queues and exchanges"):
        plugins = load_plugins(allow=["demo"])
        queues = {queue_name(keys, p.job_type) for p in plugins.job_types.values()}
        delete_broker_entities(
            BROKER_URL,
            sorted({*queues, keys.dead_letter_queue}),
            [keys.exchange, keys.dead_letter_exchange],
        )
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive, default=10, help="seconds per run (default 10)")
    parser.add_argument(
        "--connections", type=positive, default=32, help="concurrent clients (default 32)"
    )
    parser.add_argument("--rounds", type=positive, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--api-workers", type=positive, default=1, metavar="N", help="server processes (default 1)"
    )
    parser.add_argument(
        "--batch-clients", type=positive, default=2, metavar="B", help="batch senders (default 2)"
    )
    parser.add_argument("--summary", type=Path, metavar="FILE", help="write the figures as JSON")
    options = parser.parse_args()
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)

    run_id = uuid.uuid4().hex[:8]
    keys = Keys(f"bench-api-{run_id}")
    client = redis.Redis.from_url(REDIS_URL, client_name=f"{keys.prefix}-bench")
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as scratch:
            api = api_server(keys.prefix, options.api_workers)
            servers.append(api)
            noop = noop_server(options.api_workers)
            servers.append(noop)
            for server in servers:
                server.wait_ready()
            load = Load(options.connections, Path(scratch))
            print(f"run {run_id}: api on {api.base_url}, do-nothing POST on {noop.base_url}")
            print(f"generator: {load.description}; {options.seconds} s per run")
            figures = measure(options, api, noop, load)
        for server in servers:
            print(log_summary(server))
        report(figures)
        if options.summary is not None:
            options.summary.write_text(json.dumps(summary(figures)), encoding="utf-8")
    finally:
        stop_all(servers)
        clean_up(keys, client)


if __name__ == "__main__":
    main()
