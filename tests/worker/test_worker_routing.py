"""A worker consumes only the queues of the types it serves."""

from __future__ import annotations

import subprocess
import time

from harness import ORCHESTRATOR, Jobs, Workers

from orchestrator_core import State


def test_a_worker_given_types_serves_only_their_queues(workers: Workers, jobs: Jobs) -> None:
    workers.start(types="demo.echo")
    sleeper = jobs.submit("demo.sleep", {"seconds": 0})
    echo = jobs.submit("demo.echo", {"message": "served"})
    jobs.wait(echo.id, State.COMPLETED)
    time.sleep(0.5)
    assert jobs.store.get(sleeper.id).state is State.CREATED
    workers.start(types="demo.sleep")
    jobs.wait(sleeper.id, State.COMPLETED)


def test_unknown_types_are_refused_at_start(workers: Workers) -> None:
    done = subprocess.run(
        [str(ORCHESTRATOR), "worker", "--types", "demo.echo,nope.nothing"],
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown job type 'nope.nothing'" in done.stderr
    assert "demo.echo" in done.stderr
    assert "Traceback" not in done.stderr
