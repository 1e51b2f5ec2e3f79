"""The system as deployed: `orchestrator api` and `orchestrator worker` as real processes,
driven over HTTP to every terminal state."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import stop_group

from orchestrator_core import Settings

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def system(api_settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_PREFIX=api_settings.prefix,
        ORCHESTRATOR_PLUGINS="demo",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2",
    )
    port = _free_port()
    processes = []
    logs = {}
    for name, command in (
        ("api", ["--log-level", "INFO", "api", "--port", str(port)]),
        ("worker", ["--log-level", "INFO", "worker", "--concurrency", "2"]),
    ):
        logs[name] = tmp_path / f"{name}.log"
        with logs[name].open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [str(ORCHESTRATOR), *command],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + 60
        while " ready." not in logs["worker"].read_text() or not _answers(client):
            assert time.monotonic() < deadline, "the system did not come up"
            assert all(p.poll() is None for p in processes), "a process exited at start"
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        for process in processes:
            stop_group(process)
        for name, log in logs.items():
            print(f"--- {name}\n{log.read_text()[-4000:]}")


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _wait(client: httpx.Client, job_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["state"] == state:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['state']}: {job}"
        time.sleep(0.05)


def test_jobs_reach_completed_failed_and_cancelled_over_http(system: httpx.Client) -> None:
    echo = system.post("/jobs", json={"type": "demo.echo", "payload": {"message": "hi"}})
    failing = system.post("/jobs", json={"type": "demo.fail", "payload": {"times": 1}})
    permanent = system.post(
        "/jobs", json={"type": "demo.fail", "payload": {"times": 0, "permanent": True}}
    )
    sleeper = system.post("/jobs", json={"type": "demo.sleep", "payload": {"seconds": 60}})
    assert {r.status_code for r in (echo, failing, permanent, sleeper)} == {201}

    assert _wait(system, echo.json()["id"], "COMPLETED")["result"]["message"] == "hi"
    retried = _wait(system, failing.json()["id"], "COMPLETED")
    assert retried["attempts"] == 2
    failed = _wait(system, permanent.json()["id"], "FAILED")
    assert failed["error"]["type"] == "PermanentError"

    sleeper_id = sleeper.json()["id"]
    _wait(system, sleeper_id, "RUNNING")
    assert system.delete(f"/jobs/{sleeper_id}").status_code == 202
    cancelled = _wait(system, sleeper_id, "CANCELLED", timeout=5)
    assert cancelled["history"][-1]["reason"] == "cancelled"
    assert system.delete(f"/jobs/{echo.json()['id']}").status_code == 409

    listed = system.get("/jobs", params={"type": "demo.fail"}).json()["items"]
    assert [job["id"] for job in listed] == [permanent.json()["id"], failing.json()["id"]]
