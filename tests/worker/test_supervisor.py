"""The per-process supervisor, driven directly against the real Redis."""

from __future__ import annotations

import time

from orchestrator_core import State
from orchestrator_core.store import JobStore
from worker.supervisor import RunningAttempt, Supervisor


def running_attempt(store: JobStore, owner: str = "w:1") -> RunningAttempt:
    job = store.create("t.demo", {}, max_attempts=1)
    start = store.start(job.id, 1, owner)
    assert start.started
    return RunningAttempt(job=start.job, owner=owner)


def never_escalate(attempt: RunningAttempt) -> None:
    raise AssertionError(f"unexpected escalation of {attempt.job.id}")


def test_a_cancel_published_before_the_watch_begins_still_fires(store: JobStore) -> None:
    supervisor = Supervisor(store, lease_seconds=30, grace_seconds=30, on_escalate=never_escalate)
    attempt = running_attempt(store)
    supervisor.cancel(attempt.job.id)  # arrives between the start in Redis and begin()
    supervisor.begin(attempt)
    assert attempt.token.cancelled
    assert attempt.token.reason == "cancelled"
    supervisor.end(attempt)


def test_a_cancel_for_another_job_fires_nothing(store: JobStore) -> None:
    supervisor = Supervisor(store, lease_seconds=30, grace_seconds=30, on_escalate=never_escalate)
    attempt = running_attempt(store)
    supervisor.cancel("some-other-job")
    supervisor.begin(attempt)
    assert not attempt.token.cancelled
    supervisor.cancel(attempt.job.id)
    assert attempt.token.reason == "cancelled"
    supervisor.end(attempt)


def test_a_deleted_job_counts_as_a_lost_lease(store: JobStore) -> None:
    supervisor = Supervisor(store, lease_seconds=0.15, grace_seconds=30, on_escalate=never_escalate)
    attempt = running_attempt(store)
    supervisor.begin(attempt)
    store.redis.delete(store.keys.job(attempt.job.id))
    assert attempt.token.wait(2)
    assert attempt.lost
    supervisor.end(attempt)


def test_the_timeout_fires_the_token_and_escalates_after_the_grace(store: JobStore) -> None:
    escalated: list[tuple[RunningAttempt, float]] = []
    supervisor = Supervisor(
        store,
        lease_seconds=30,
        grace_seconds=0.2,
        on_escalate=lambda a: escalated.append((a, time.monotonic())),
    )
    attempt = running_attempt(store)
    attempt.timeout = 0.1
    supervisor.begin(attempt)
    assert attempt.token.wait(5)
    assert attempt.token.reason == "timeout"
    deadline = time.monotonic() + 5
    while not escalated and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [a for a, _ in escalated] == [attempt]
    assert attempt.fired_at is not None
    assert escalated[0][1] - attempt.fired_at >= 0.2


def test_renewal_keeps_the_lease_and_reads_the_cancel_flag(store: JobStore) -> None:
    supervisor = Supervisor(store, lease_seconds=0.3, grace_seconds=30, on_escalate=never_escalate)
    attempt = running_attempt(store)
    supervisor.begin(attempt)
    time.sleep(0.5)  # past the first lease: only renewals keep it alive
    seconds, micros = store.redis.time()
    expires_ms = int(store.redis.hget(store.keys.job(attempt.job.id), "lease_expires_ms") or 0)
    assert expires_ms > seconds * 1000 + micros // 1000
    # A cancel whose pub/sub message was lost: only the flag in Redis says so.
    store.redis.hset(store.keys.job(attempt.job.id), "cancel_requested", 1)
    assert attempt.token.wait(2), "the renewal should have read the flag"
    supervisor.end(attempt)
    assert store.get(attempt.job.id).state is State.RUNNING


def test_progress_is_flushed_under_the_lease(store: JobStore) -> None:
    supervisor = Supervisor(store, lease_seconds=30, grace_seconds=30, on_escalate=never_escalate)
    attempt = running_attempt(store)
    supervisor.begin(attempt)
    for step in range(50):
        attempt.token.report_progress(step / 50, f"step {step}")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        progress = store.get(attempt.job.id).progress
        if progress is not None and progress.message == "step 49":
            break
        time.sleep(0.02)
    supervisor.end(attempt)
    progress = store.get(attempt.job.id).progress
    assert progress is not None
    assert progress.message == "step 49"
