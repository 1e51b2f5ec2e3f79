"""``shell.run`` on a real worker process: the command sees none of the worker's environment.

An API and a worker are started as an operator starts them (``orchestrator api``,
``orchestrator worker``) on the machine's Redis and RabbitMQ, under a prefix of the
test's own, with API keys, broker credentials and a cloud secret in their environment.
A job running ``env`` must print none of them, only its own ``env`` and ``secret_env``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from orchestrator_core import TERMINAL_STATES, load_plugins, load_settings

# The service helpers live in the repository's tests/, which is on sys.path only when a
# test from there was collected first.
SHARED = str(Path(__file__).resolve().parents[3] / "tests")
if SHARED not in sys.path:
    sys.path.append(SHARED)
from cleanup import delete_broker_objects, delete_keys, job_queues  # noqa: E402
from processes import stop_group  # noqa: E402
from services import require_broker, require_redis  # noqa: E402

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
TERMINAL = {state.value for state in TERMINAL_STATES}


@dataclass
class Deployment:
    """An API and a worker of the test's own, and the secrets their environment holds."""

    api: httpx.Client
    secrets: dict[str, str]
    logs: list[Path]

    def describe(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in self.logs
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(ORCHESTRATOR), "--log-level", "INFO", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(
    what: str, check: Any, processes: list[subprocess.Popen[bytes]], logs: list[Path]
) -> None:
    deadline = time.monotonic() + 60
    while not check():
        for process in processes:
            if process.poll() is not None:
                text = "\n".join(log.read_text(errors="replace")[-4000:] for log in logs)
                pytest.fail(f"a process exited before {what}:\n{text}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within 60 s")
        time.sleep(0.1)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    machine = load_settings()
    client = redis.Redis.from_url(machine.redis_url, socket_timeout=5)
    require_redis(client, machine.redis_url)
    require_broker(machine.broker_url)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    api_key = secrets.token_urlsafe(24)
    held = {
        "ORCHESTRATOR_API_KEYS": api_key,
        "ORCHESTRATOR_BROKER_URL": machine.broker_url,
        "ORCHESTRATOR_REDIS_URL": machine.redis_url,
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(held, ORCHESTRATOR_PREFIX=prefix, ORCHESTRATOR_PLUGINS="shell")
    port = free_port()
    logs = [tmp_path / "api.log", tmp_path / "worker.log"]
    processes = [
        start(["api", "--port", str(port), "--workers", "1"], env=env, log=logs[0]),
        start(["worker", "--concurrency", "1"], env=env, log=logs[1]),
    ]
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )

    def answering() -> bool:
        try:
            return api.get("/healthz").is_success
        except httpx.TransportError:
            return False

    try:
        wait_until("the API answering", answering, processes, logs)
        wait_until("the worker ready", lambda: " ready." in logs[1].read_text(), processes, logs)
        yield Deployment(api, held, logs)
    finally:
        api.close()
        for process in processes:
            stop_group(process)
        delete_keys(client, prefix)
        client.close()
        queues = job_queues(prefix, load_plugins(allow=["shell"]))
        delete_broker_objects(machine.broker_url, prefix, queues)


def test_a_job_running_env_sees_none_of_the_workers_variables(deployment: Deployment) -> None:
    api = deployment.api
    token = secrets.token_urlsafe(16)
    payload = {"argv": ["env"], "env": {"STAGE": "test"}, "secret_env": {"TOKEN": token}}
    created = api.post("/jobs", json={"type": "shell.run", "payload": payload})
    assert created.status_code == 201, created.text
    assert created.json()["payload"]["secret_env"] == {"TOKEN": "**********"}
    job_id = created.json()["id"]

    deadline = time.monotonic() + 45
    while (job := api.get(f"/jobs/{job_id}").json())["state"] not in TERMINAL:
        assert time.monotonic() < deadline, f"the job did not finish:\n{deployment.describe()}"
        time.sleep(0.1)

    assert job["state"] == "COMPLETED", f"{job}\n{deployment.describe()}"
    output = job["result"]["stdout"]
    variables = dict(line.split("=", 1) for line in output.splitlines())
    assert set(variables) == {"PATH", "HOME", "LANG", "LC_ALL", "STAGE", "TOKEN"}, output
    assert variables["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    # The secret's real value reached the command, though the job never shows it.
    assert (variables["STAGE"], variables["TOKEN"]) == ("test", token)
    for name, value in deployment.secrets.items():
        assert value not in output, f"the value of the worker's {name} reached the command"
    assert "guest:guest" not in output
