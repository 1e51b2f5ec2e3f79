"""Cooperative cancellation, and what the worker does to jobs that ignore their token."""

from __future__ import annotations

import time

from harness import Jobs, Workers
from kombu import Connection

from orchestrator_core import State
from orchestrator_core.store import CancelOutcome


def test_cancel_reaches_a_running_job_within_milliseconds(workers: Workers, jobs: Jobs) -> None:
    workers.start()
    job = jobs.submit("demo.sleep", {"seconds": 60, "steps": 1})
    jobs.wait(job.id, State.RUNNING)
    time.sleep(0.1)  # let execute settle into its wait
    started = time.monotonic()
    assert jobs.store.cancel(job.id).outcome is CancelOutcome.REQUESTED
    cancelled = jobs.wait(job.id, State.CANCELLED, timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, "pub/sub should beat the lease-renewal fallback by far"
    assert cancelled.cancel_requested
    assert cancelled.history[-1].reason == "cancelled"
    assert cancelled.attempts == 1


def test_a_queued_job_cancelled_before_delivery_never_runs(workers: Workers, jobs: Jobs) -> None:
    job = jobs.submit("demo.echo", {"message": "never"})
    assert jobs.store.cancel(job.id).outcome is CancelOutcome.CANCELLED
    workers.start()
    queue = f"{jobs.store.keys.prefix}.demo.echo"
    deadline = time.monotonic() + 10
    with Connection(workers.settings.broker_url) as connection:
        while connection.default_channel.queue_declare(queue, passive=True).message_count:
            assert time.monotonic() < deadline, "the message was never consumed"
            time.sleep(0.05)
    time.sleep(0.3)
    final = jobs.store.get(job.id)
    assert [h.state for h in final.history] == [State.CREATED, State.CANCELLED]
    assert final.attempts == 0
    assert "finished" in workers.started[0].text()


def test_a_job_ignoring_its_token_is_stopped_after_the_grace(workers: Workers, jobs: Jobs) -> None:
    worker = workers.start()
    job = jobs.submit("wt.ignore", {"seconds": 60})
    jobs.wait(job.id, State.RUNNING)
    started = time.monotonic()
    jobs.store.cancel(job.id)
    cancelled = jobs.wait(job.id, State.CANCELLED, timeout=10)
    assert time.monotonic() - started < 5
    assert "ignored its token" in (cancelled.history[-1].reason or "")
    # The slot was recovered: the same single-process worker runs the next job.
    after = jobs.submit("demo.echo", {"message": "still serving"})
    assert jobs.wait(after.id, State.COMPLETED, timeout=20).result["message"] == "still serving"
    assert worker.process.poll() is None


def test_a_job_ignoring_its_timeout_is_stopped_and_fails(workers: Workers, jobs: Jobs) -> None:
    workers.start()
    job = jobs.submit("wt.stubborn", {"seconds": 60})
    failed = jobs.wait(job.id, State.FAILED, timeout=15)
    assert failed.error is not None
    assert failed.error.type == "Timeout"
    assert failed.attempts == 1
    assert "ignored its token" in (failed.history[-1].reason or "")
    after = jobs.submit("demo.echo", {"message": "next"})
    jobs.wait(after.id, State.COMPLETED, timeout=20)
