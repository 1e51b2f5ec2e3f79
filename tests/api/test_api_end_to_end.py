"""The system as deployed: `orchestrator api` and `orchestrator worker` as real processes,
driven over HTTP to every terminal state."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import free_port, running_system

from orchestrator_core import Settings


@pytest.fixture
def system(api_settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_PREFIX=api_settings.prefix,
        ORCHESTRATOR_PLUGINS="demo",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2",
    )
    with running_system(
        env,
        free_port(),
        tmp_path,
        worker=["--log-level", "INFO", "worker", "--concurrency", "2"],
        api=["--log-level", "INFO", "api"],
    ) as (client, _):
        yield client


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
