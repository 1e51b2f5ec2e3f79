"""API throughput: ``POST /jobs`` beside ``GET /healthz`` on the same server, same run.

Starts the control plane (``orchestrator api``) as a subprocess under a unique prefix
and drives it from C concurrent clients on loopback, with ``wrk`` when it is installed
(a C load generator, which leaves the CPU to the server) or else an asyncio httpx
client. ``GET /healthz`` does nothing (no Redis, no broker), so it shows what the
server, the framework and the generator cost; ``POST /jobs`` adds validation, the job
stored in Redis and a confirmed publish to RabbitMQ. No worker runs: the jobs stay
CREATED. The two alternate for R rounds, after a short warm-up of each, and the medians
are reported, since a shared 2-core machine slows down in spells. Every Redis key,
queue and exchange of the run is deleted at the end, also on failure or Ctrl-C. Talks
only to 127.0.0.1.

    python bench/api_throughput.py [--seconds S] [--connections C] [--rounds R] [--api-threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench.service import (
    Service,
    delete_broker_entities,
    delete_keys,
    interrupt_once,
    step,
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
WRK_THREADS = 2
WRK_TIMEOUT = "10s"
"""Past wrk's default of 2 s, so a slow answer counts in the latencies, not as an error."""
WARMUP_SECONDS = 2
READY_SECONDS = 60.0
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
LEVELS = ("WARNING", "ERROR", "CRITICAL", "Traceback")

POST_SCRIPT = f"""\
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Sample:
    """One load run against one endpoint."""

    rate: float
    """Responses per second."""
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    """Answers outside 2xx and 3xx."""
    errors: int
    """Connect, read, write errors and timeouts: requests that got no answer."""


class ApiProcess(Service):
    """``orchestrator api`` on a loopback port; ready once ``GET /healthz`` answers."""

    def __init__(self, port: int, env: dict[str, str], workers: int = 1) -> None:
        argv = [str(BIN / "orchestrator"), "--log-level", "WARNING", "api"]
        argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
        super().__init__("bench-api", argv, env)
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self) -> None:
        """Poll ``GET /healthz`` until it answers 200."""
        deadline = time.monotonic() + READY_SECONDS
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while True:
                self.check_running()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"api not ready in {READY_SECONDS:g} s:\n{self.tail()}")
                time.sleep(0.1)


def api_env(prefix: str, threads: int | None = None) -> dict[str, str]:
    """This environment without any ORCHESTRATOR_ setting, plus the run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    if threads is not None:
        env["ORCHESTRATOR_API_THREADS"] = str(threads)
    return {
        **env,
        "ORCHESTRATOR_PREFIX": prefix,
        "ORCHESTRATOR_PLUGINS": "demo",
        "ORCHESTRATOR_REDIS_URL": REDIS_URL,
        "ORCHESTRATOR_BROKER_URL": BROKER_URL,
    }


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


def run_wrk(url: str, script: Path | None, seconds: int, connections: int) -> Sample:
    argv = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--latency", "--timeout", WRK_TIMEOUT]
    if script is not None:
        argv += ["-s", str(script)]
    done = subprocess.run(
        [*argv, url],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def httpx_load(url: str, post: bool, seconds: int, connections: int) -> Sample:
    """``connections`` clients, each sending its next request once the last one is answered."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    headers = {"Content-Type": "application/json"}
    started = time.perf_counter()
    deadline = started + seconds

    async def one_client() -> None:
        nonlocal errors
        # A client each: one shared pool of C connections costs more than the requests.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=10.0, trust_env=False) as client:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    if post:
                        response = await client.post(url, content=BODY, headers=headers)
                    else:
                        response = await client.get(url)
                except httpx.TransportError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                statuses[response.status_code] += 1

    await asyncio.gather(*(one_client() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if not latencies:
        raise RuntimeError(f"no answer from {url} in {seconds} s ({errors} transport errors)")
    return Sample(
        rate=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        requests=len(latencies),
        non_2xx=sum(n for code, n in statuses.items() if not 200 <= code < 400),
        errors=errors,
    )


class Generator:
    """Drives one endpoint for a while: wrk if installed, else asyncio httpx."""

    def __init__(self, base_url: str, connections: int, script_dir: Path) -> None:
        self.base_url = base_url
        self.connections = connections
        self.wrk = shutil.which("wrk")
        self.post_script = script_dir / "post_jobs.lua"
        self.post_script.write_text(POST_SCRIPT, encoding="utf-8")

    @property
    def description(self) -> str:
        if self.wrk:
            threads = min(WRK_THREADS, self.connections)
            return f"wrk ({self.wrk}, {threads} threads, {self.connections} connections)"
        return (
            f"httpx asyncio client, {self.connections} connections (wrk not found: this "
            "Python client shares the cores with the server and is likely the bottleneck, "
            "so rates read low and the ratio reads high; install wrk for real figures)"
        )

    def healthz(self, seconds: int) -> Sample:
        url = f"{self.base_url}/healthz"
        if self.wrk:
            return run_wrk(url, None, seconds, self.connections)
        return asyncio.run(httpx_load(url, False, seconds, self.connections))

    def post_jobs(self, seconds: int) -> Sample:
        url = f"{self.base_url}/jobs"
        if self.wrk:
            return run_wrk(url, self.post_script, seconds, self.connections)
        return asyncio.run(httpx_load(url, True, seconds, self.connections))


@dataclass(frozen=True)
class Figures:
    healthz: list[Sample]
    post: list[Sample]
    warmup: list[Sample]
    jobs_created: int


def measure(
    options: argparse.Namespace, api: ApiProcess, generator: Generator
) -> tuple[list[Sample], list[Sample]]:
    """The alternating rounds: the healthz samples and the POST samples."""
    healthzs: list[Sample] = []
    posts: list[Sample] = []
    for round_ in range(options.rounds):
        healthz = generator.healthz(options.seconds)
        post = generator.post_jobs(options.seconds)
        healthzs.append(healthz)
        posts.append(post)
        print(
            f"round {round_ + 1}: GET /healthz {healthz.rate:7.0f} req/s "
            f"p99 {healthz.p99_ms:6.1f} ms   POST /jobs {post.rate:7.0f} req/s "
            f"p99 {post.p99_ms:6.1f} ms   ratio {post.rate / healthz.rate:.2f}",
            flush=True,
        )
        if api.process.poll() is not None:
            raise RuntimeError(f"api exited ({api.process.returncode}):\n{api.tail()}")
    return healthzs, posts


def line(label: str, samples: list[Sample], target: str) -> str:
    rate = statistics.median(s.rate for s in samples)
    p50 = statistics.median(s.p50_ms for s in samples)
    p99 = statistics.median(s.p99_ms for s in samples)
    return f"{label:13s} {rate:7.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms{target}"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(figures: Figures, connections: int) -> None:
    post, healthz = figures.post, figures.healthz
    ratios = [p.rate / h.rate for p, h in zip(post, healthz, strict=True)]
    ratio = statistics.median(ratios)
    p99_met = statistics.median(s.p99_ms for s in post) < TARGET_P99_MS
    print()
    print(f"medians of {len(post)} alternating rounds:")
    print(line("POST /jobs", post, f"   target p99 < {TARGET_P99_MS:g} ms: {verdict(p99_met)}"))
    print(line("GET /healthz", healthz, "   (does nothing: the ceiling)"))
    print(
        f"ratio {ratio:.2f} (rounds {min(ratios):.2f}..{max(ratios):.2f})"
        f"   target >= {TARGET_RATIO:.2f}: {verdict(ratio >= TARGET_RATIO)}"
    )
    # Closed loop: each connection sends again once answered, so the mean latency is
    # connections / rate (Little's law), whatever the server does with its time.
    floor = connections / TARGET_P99_MS * 1000
    print(
        f"(closed loop: mean latency = {connections} connections / rate; a p99 under "
        f"{TARGET_P99_MS:g} ms needs well over {floor:.0f} req/s)"
    )
    every = [*figures.warmup, *post, *healthz]
    answered = sum(s.requests - s.non_2xx for s in [figures.warmup[1], *post])
    print(
        f"jobs created {figures.jobs_created} (ZCARD idx:all); POST /jobs answered 2xx "
        f"{answered}, warm-up included (requests in flight when a run ends are not counted)"
    )
    print(
        f"non-2xx: POST /jobs {sum(s.non_2xx for s in post)}, "
        f"GET /healthz {sum(s.non_2xx for s in healthz)}; "
        f"no answer (socket errors, timeouts): {sum(s.errors for s in every)}"
    )


def log_summary(api: ApiProcess) -> str:
    lines = api.text().splitlines()
    counts = {level: sum(level in text for text in lines) for level in LEVELS}
    found = ", ".join(f"{n} {level}" for level, n in counts.items() if n) or "no warnings or errors"
    flagged = Counter(text for text in lines if any(level in text for level in LEVELS))
    shown = [f"    {n:5d} x {text[:150]}" for text, n in flagged.most_common(5)]
    # wrk closes its connections when a run ends; requests still queued in the server then
    # fail reading their body, and the API logs each as a 500 that no client ever sees.
    gone = sum(text.endswith("ClientDisconnect") for text in lines)
    if gone:
        shown.append(
            f"    ({gone} of the tracebacks end in ClientDisconnect: requests cut off when a "
            "load run ended, each logged twice)"
        )
    return "\n".join([f"api log: {len(lines)} lines, {found}", *shown])


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
    parser.add_argument(
        "--seconds", type=positive, default=10, help="seconds per load run (default 10)"
    )
    parser.add_argument(
        "--connections", type=positive, default=32, help="concurrent clients (default 32)"
    )
    parser.add_argument(
        "--rounds", type=positive, default=3, help="alternating rounds per endpoint (default 3)"
    )
    parser.add_argument(
        "--api-threads",
        type=positive,
        metavar="N",
        help="the API's ORCHESTRATOR_API_THREADS (default: the setting's default)",
    )
    parser.add_argument(
        "--api-workers", type=positive, default=1, metavar="N", help="server processes (default 1)"
    )
    parser.add_argument("--keep-log", action="store_true", help="keep the API's log file")
    options = parser.parse_args()
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)

    run_id = uuid.uuid4().hex[:8]
    keys = Keys(f"bench-api-{run_id}")
    client = redis.Redis.from_url(REDIS_URL, client_name=f"{keys.prefix}-bench")
    api: ApiProcess | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as scratch:
            env = api_env(keys.prefix, options.api_threads)
            api = ApiProcess(free_port(), env, options.api_workers)
            api.wait_ready()
            generator = Generator(api.base_url, options.connections, Path(scratch))
            print(f"run {run_id}: api pid {api.process.pid} on {api.base_url}")
            print(
                f"generator: {generator.description}; {options.seconds} s per run, "
                f"{options.rounds} rounds, {WARMUP_SECONDS} s warm-up of each endpoint"
            )
            warmup = [generator.healthz(WARMUP_SECONDS), generator.post_jobs(WARMUP_SECONDS)]
            healthz, post = measure(options, api, generator)
        figures = Figures(
            healthz=healthz,
            post=post,
            warmup=warmup,
            jobs_created=int(client.get(keys.sequence) or 0),
        )
        print()
        print(log_summary(api))
        report(figures, options.connections)
    finally:
        if api is not None:
            with step("stopping the api"):
                api.stop()
            if options.keep_log:
                print(f"api log kept: {api.log}")
            else:
                api.log.unlink(missing_ok=True)
        clean_up(keys, client)


if __name__ == "__main__":
    main()
