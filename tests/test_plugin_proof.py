"""The end-to-end proof that a third party's plugin needs no change to the orchestrator.

A plugin is scaffolded with the installed ``orchestrator`` command and installed with
pip as an operator would (not editable). Then, with nothing else changed: the CLI
lists it, a freshly started api offers its job type, and a freshly started worker
runs a job of it, submitted over HTTP, to COMPLETED.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, delete_keys

from cli.scaffold import PluginNames
from orchestrator_core import load_plugins, load_settings
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.store.keys import Keys

BIN = Path(sys.executable).parent
ORCHESTRATOR = BIN / "orchestrator"
STOP_SECONDS = 10


@dataclass
class Deployment:
    """What the test started, so that the teardown can undo all of it."""

    tmp: Path
    names: PluginNames
    prefix: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)

    def start(self, label: str, *args: str) -> None:
        log = (self.tmp / f"{label}.log").open("wb")
        self.logs[label] = log
        self.processes[label] = subprocess.Popen(
            [str(ORCHESTRATOR), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, label: str) -> str:
        self.logs[label].flush()
        return (self.tmp / f"{label}.log").read_text(errors="replace")[-4000:]

    def check_alive(self) -> None:
        for label, process in self.processes.items():
            code = process.poll()
            assert code is None, f"orchestrator {label} exited with {code}:\n{self.log(label)}"

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for log in self.logs.values():
            log.close()


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, deployment: Deployment, check: Any, seconds: float) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        deployment.check_alive()
        with contextlib.suppress(httpx.TransportError):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {k}:\n{deployment.log(k)}" for k in deployment.processes)
            pytest.fail(f"{what} did not happen within {seconds} s\n{logs}")
        time.sleep(0.1)


def clean_up_services(prefix: str, queues: list[str]) -> None:
    settings = load_settings(prefix=prefix)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        delete_keys(client, prefix)
    finally:
        client.close()
    delete_broker_objects(settings.broker_url, prefix, queues)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    names = PluginNames.parse(f"prooft{uuid.uuid4().hex[:6]}")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    # An open API (no keys), under a prefix of its own, with only the plugins this test owns.
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_API_KEYS"}
    env.update(ORCHESTRATOR_PREFIX=prefix, ORCHESTRATOR_PLUGINS=f"demo,{names.name}")
    keys = Keys(prefix)
    queues = sorted(
        {queue_name(keys, r.job_type) for r in load_plugins(allow=["demo"]).job_types.values()}
        | {keys.queue(names.type_name), keys.dead_letter_queue}
    )
    assert len(queues) == 5
    deployed = Deployment(tmp_path, names, prefix, env)
    try:
        yield deployed
    finally:
        deployed.stop()
        cli(sys.executable, "-m", "pip", "uninstall", "-y", "-q", names.distribution, env=env)
        clean_up_services(prefix, queues)


def test_a_scaffolded_plugin_runs_end_to_end_without_changing_the_project(
    deployment: Deployment,
) -> None:
    names, env = deployment.names, deployment.env
    type_name = names.type_name

    made = cli(
        str(ORCHESTRATOR), "plugins", "new", names.name, "--directory", str(deployment.tmp), env=env
    )
    assert made.returncode == 0, made.stderr
    project = deployment.tmp / names.distribution
    installed = cli(
        sys.executable, "-m", "pip", "install", "-q", str(project), env=env, timeout=120
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = cli(
        sys.executable, "-c", f"import {names.package}; print({names.package}.__file__)", env=env
    )
    assert site.returncode == 0, site.stderr
    assert not site.stdout.startswith(str(project)), "installed as a copy, not from the source"

    listed = cli(str(ORCHESTRATOR), "plugins", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"  {names.name}  ({names.distribution} 0.1.0, {names.package}.plugin)" in listed.stdout
    assert f"    {type_name}  " in listed.stdout

    port = free_port()
    deployment.start("api", "api", "--port", str(port))
    deployment.start("worker", "worker", "--concurrency", "1")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
        wait_for("the api answering", deployment, lambda: api.get("/healthz").is_success, 30)

        offered = {t["name"]: t for t in api.get("/job-types").raise_for_status().json()}
        assert {type_name, "demo.echo"} <= set(offered)
        assert offered[type_name]["plugin"]["distribution"] == names.distribution
        assert offered[type_name]["payload_schema"]["required"] == ["name"]

        created = api.post(
            "/jobs", json={"type": type_name, "payload": {"name": "proof", "delay": 0.05}}
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = api.get(f"/jobs/{job_id}").raise_for_status().json()
            return job if job["state"] in {"COMPLETED", "FAILED", "CANCELLED"} else None

        job = wait_for("the job finishing", deployment, finished, 45)

    assert job["state"] == "COMPLETED", job
    assert job["result"] == {"greeting": "Hello, proof!"}
    assert job["progress"] == {"fraction": 1.0, "message": "step 3/3"}
    assert [entry["state"] for entry in job["history"]] == ["CREATED", "RUNNING", "COMPLETED"]
