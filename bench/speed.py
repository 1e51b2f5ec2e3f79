"""The whole speed table: every figure of the orchestrator beside its baseline, one command.

Runs, one after the other (never at once: they share the machine's cores), each with
its baseline in the same run:

- ``worker_throughput.py``: our workers beside raw Celery (drain of a backlog, start to
  last completion, CPU per job by process group, Redis commands per job, cancel latency);
- ``api_throughput.py``: ``POST /jobs`` beside a do-nothing FastAPI POST served the same
  way, and ``POST /jobs/batch``;
- ``dispatch_latency.py``: an open loop of 100 and 500 jobs a second through two
  workers of concurrency 2.

Then prints one table from what each wrote. Talks only to 127.0.0.1.

    python bench/speed.py [--jobs N] [--rounds R] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cli.arguments import positive

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = ("worker", "redis", "rabbitmq")


def run(script: str, summary: Path, *args: str) -> Any:
    print(f"--- {script} {' '.join(args)}", flush=True)
    subprocess.run(
        [sys.executable, str(HERE / script), *args, "--summary", str(summary)],
        cwd=ROOT,
        check=True,
    )
    return json.loads(summary.read_text(encoding="utf-8"))


def cpu(figures: dict[str, float]) -> str:
    parts = "  ".join(f"{group} {figures[group]:.2f}" for group in ORDER)
    return f"{parts}  = {sum(figures[group] for group in ORDER):.2f}"


def table(worker: dict[str, Any], api: dict[str, Any], dispatch: list[dict[str, Any]]) -> str:
    rows = [
        ("measure", "orchestrator", "baseline", "ratio"),
        (
            "drain of a queued backlog",
            f"{worker['drain']:.0f} jobs/s",
            f"raw Celery {worker['raw_drain']:.0f} jobs/s",
            f"{worker['drain_ratio']:.2f}",
        ),
        (
            "worker start to last completion",
            f"{worker['throughput']:.0f} jobs/s",
            f"raw Celery {worker['raw_throughput']:.0f} jobs/s",
            f"{worker['throughput_ratio']:.2f}",
        ),
        (
            "CPU ms per job, drain",
            cpu(worker["cpu_ms"]),
            cpu(worker["raw_cpu_ms"]),
            f"{sum(worker['cpu_ms'].values()) / sum(worker['raw_cpu_ms'].values()):.2f}",
        ),
        (
            "Redis commands per job",
            f"{worker['commands']:.2f}",
            f"raw Celery {worker['raw_commands']:.2f}",
            f"{worker['commands'] / max(worker['raw_commands'], 1e-9):.1f}x",
        ),
        (
            f"POST /jobs, wrk, 32 connections, {api['workers']} process(es)",
            f"{api['post_rate']:.0f} req/s, p99 {api['post_p99_ms']:.0f} ms, "
            f"{api['post_cpu_ms']:.2f} ms CPU",
            f"do-nothing POST {api['noop_rate']:.0f} req/s, p99 {api['noop_p99_ms']:.0f} ms, "
            f"{api['noop_cpu_ms']:.2f} ms CPU",
            f"{api['ratio']:.2f}",
        ),
        (
            "POST /jobs/batch, 500 a batch",
            f"{api['batch_rate']:.0f} jobs/s, {api['batch_cpu_ms']:.2f} ms CPU/job",
            "target 10,000 jobs/s",
            f"{api['batch_rate'] / 10_000:.2f}",
        ),
    ]
    for run_ in dispatch:
        rows.append(
            (
                f"open loop {run_['offered']:.0f} jobs/s, 2 workers x 2",
                f"created {run_['created']:.0f}/s, completed {run_['completed']:.0f}/s",
                f"created -> RUNNING p50 {run_['p50_ms']:.1f} ms, p99 {run_['p99_ms']:.1f} ms",
                "",
            )
        )
    rows.append(("cancel latency (running job)", f"p99 {worker['cancel_p99_ms']:.1f} ms", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=positive, default=3000, help="jobs per worker run")
    parser.add_argument("--rounds", type=positive, default=3, help="alternating rounds")
    parser.add_argument("--seconds", type=positive, default=10, help="seconds per load run")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as scratch:
        folder = Path(scratch)
        worker = run(
            "worker_throughput.py",
            folder / "worker.json",
            "--jobs",
            str(options.jobs),
            "--rounds",
            str(options.rounds),
            "--cancels",
            "50",
        )
        api = run(
            "api_throughput.py",
            folder / "api.json",
            "--seconds",
            str(options.seconds),
            "--rounds",
            str(options.rounds),
        )
        dispatch = run(
            "dispatch_latency.py", folder / "dispatch.json", "--seconds", str(options.seconds)
        )
    print()
    print(table(worker, api, dispatch))


if __name__ == "__main__":
    main()
