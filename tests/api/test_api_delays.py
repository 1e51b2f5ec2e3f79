"""Delayed jobs through the deployed system: `orchestrator api` and `orchestrator worker`
as real processes, every one of them restarted while the job waits for its time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, stop_group

from orchestrator_core import Settings

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


class System:
    """An API and a worker under the test's prefix, which can be stopped and started again."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        self.env.update(ORCHESTRATOR_PREFIX=settings.prefix, ORCHESTRATOR_PLUGINS="demo")
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self.client = httpx.Client(timeout=10)
        self.starts = 0

    def start(self) -> httpx.Client:
        port = free_port()
        self.starts += 1
        worker_log = self.logs / f"worker-{self.starts}.log"
        for name, command in (
            ("api", ["api", "--port", str(port)]),
            ("worker", ["--log-level", "INFO", "worker", "--concurrency", "2"]),
        ):
            with (self.logs / f"{name}-{self.starts}.log").open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [str(ORCHESTRATOR), *command],
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 60
        while " ready." not in worker_log.read_text() or not self._answers():
            assert time.monotonic() < deadline, "the system did not come up"
            time.sleep(0.1)
        return self.client

    def stop(self) -> None:
        self.client.close()
        for process in self.processes:
            stop_group(process)
        self.processes.clear()

    def _answers(self) -> bool:
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    return job


def test_a_delayed_job_survives_a_restart_of_every_process_and_starts_on_time(
    api_settings: Settings, tmp_path: Path
) -> None:
    system = System(api_settings, tmp_path)
    try:
        client = system.start()
        run_at = datetime.now(UTC) + timedelta(seconds=12)
        later = client.post(
            "/jobs",
            json={
                "type": "demo.echo",
                "payload": {"message": "later"},
                "run_at": run_at.isoformat(),
            },
        ).json()
        dropped = client.post(
            "/jobs", json={"type": "demo.echo", "payload": {"message": "no"}, "delay": 6}
        ).json()
        assert later["waiting"] == "time"
        assert client.delete(f"/jobs/{dropped['id']}").json()["state"] == "CANCELLED"
        system.stop()  # every process goes away while the job waits

        client = system.start()
        assert _job(client, later["id"])["state"] == "CREATED"
        deadline = time.monotonic() + 40
        while (job := _job(client, later["id"]))["state"] != "COMPLETED":
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        started = datetime.fromisoformat(job["started_at"])
        assert started >= run_at
        assert (started - run_at).total_seconds() < 2.0  # on time, not at a later poll
        assert job["waiting"] is None
        assert _job(client, dropped["id"])["started_at"] is None
    finally:
        system.stop()
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
