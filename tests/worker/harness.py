"""Worker processes and job helpers for the worker tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processes import stop_group

from orchestrator_core import Job, Plugins, State
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import submit
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "worker"
ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
ALLOWED = ("demo", "workertest")


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pause(self) -> None:
        """Freeze the worker and its pool, as a long GC pause or a suspended VM would."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker and every process of its pool, as a machine crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=20)


@dataclass
class Workers:
    settings: Settings
    directory: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        env.update(
            ORCHESTRATOR_PREFIX=self.settings.prefix,
            ORCHESTRATOR_BROKER_URL=self.settings.broker_url,
            ORCHESTRATOR_PLUGINS=",".join(ALLOWED),
            ORCHESTRATOR_LEASE_SECONDS=str(self.settings.lease_seconds),
            ORCHESTRATOR_CANCEL_GRACE_SECONDS=str(self.settings.cancel_grace_seconds),
            ORCHESTRATOR_SWEEP_INTERVAL_SECONDS=str(self.settings.sweep_interval_seconds),
            ORCHESTRATOR_EARLY_ACK_SECONDS=str(self.settings.early_ack_seconds),
            PYTHONPATH=os.pathsep.join([str(FIXTURES), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
        )
        return env

    def start(
        self, *, concurrency: int = 1, types: str | None = None, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        """Start a worker process and wait until it is ready; ``env`` adds settings."""
        log = self.directory / f"worker-{len(self.started)}.log"
        command = [
            str(ORCHESTRATOR),
            "--log-level",
            "INFO",
            "worker",
            "--concurrency",
            str(concurrency),
        ]
        if types:
            command += ["--types", types]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env={**self.env(), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(process, log)
        self.started.append(worker)
        deadline = time.monotonic() + 60
        while " ready." not in worker.text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{worker.text()}")
            time.sleep(0.05)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            stop_group(worker.process)


@dataclass
class Jobs:
    """Submits jobs as the API does, and waits on them."""

    store: JobStore
    publisher: Publisher
    plugins: Plugins

    def submit(self, type_name: str, payload: dict[str, Any], **options: Any) -> Job:
        job_type = self.plugins.get(type_name).job_type
        return submit(self.store, self.publisher, job_type, payload, **options).job

    def wait(
        self, job_id: str, until: Callable[[Job], bool] | State, *, timeout: float = 20.0
    ) -> Job:
        check = (lambda job: job.state is until) if isinstance(until, State) else until
        deadline = time.monotonic() + timeout
        while True:
            job = self.store.get(job_id)
            if check(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job never got there: {job.model_dump_json(indent=1)}")
            time.sleep(0.01)

    def history(self, job_id: str) -> list[tuple[str, str | None]]:
        return [(h.state.value, h.reason) for h in self.store.get(job_id).history]
