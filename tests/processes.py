"""Starting and stopping the servers and processes tests run: a free loopback port,
and a stop that always ends what was started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> None:
    """SIGTERM to ``process``'s group (started with ``start_new_session``), SIGKILL to it
    if it is still there after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM to ``process``, SIGKILL if it is still there after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def running_system(
    env: Mapping[str, str], port: int, logs: Path, worker: Sequence[str], api: Sequence[str]
) -> Iterator[tuple[httpx.Client, dict[str, Path]]]:
    """An ``orchestrator api`` on ``port`` and an ``orchestrator worker``, each run with
    the given arguments (the API's ``--port`` added), their output in ``logs``; yields a
    client of the API once the worker says it is ready and ``/readyz`` answers 200, and
    the log files by name. Both are stopped, and their logs printed, afterwards."""
    files: dict[str, Path] = {}
    processes = []
    for name, command in (("api", [*api, "--port", str(port)]), ("worker", worker)):
        files[name] = logs / f"{name}.log"
        with files[name].open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [str(ORCHESTRATOR), *command],
                    env=dict(env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + 60
        while " ready." not in files["worker"].read_text() or not _ready(client):
            assert time.monotonic() < deadline, "the system did not come up"
            assert all(p.poll() is None for p in processes), "a process exited at start"
            time.sleep(0.1)
        yield client, files
    finally:
        client.close()
        for process in processes:
            stop_group(process)
        for name, log in files.items():
            print(f"--- {name}\n{log.read_text()[-4000:]}")


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False
