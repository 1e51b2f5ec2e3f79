"""The store against the real Redis: the transition table, fencing, cancel, history, observers."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import redis

from orchestrator_core import (
    AttemptsExhaustedError,
    ErrorInfo,
    IllegalTransitionError,
    Job,
    JobExistsError,
    JobNotFoundError,
    LeaseActiveError,
    SerializationError,
    StaleLeaseError,
    State,
)
from orchestrator_core.models import Progress
from orchestrator_core.store import CancelOutcome, JobStore

# DESIGN section 4, written out independently of orchestrator_core.states.
ALLOWED = {
    ("CREATED", "RUNNING"),
    ("CREATED", "CANCELLED"),
    ("CREATED", "FAILED"),
    ("RUNNING", "COMPLETED"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "CANCELLED"),
    ("RUNNING", "RETRYING"),
    ("RETRYING", "RUNNING"),
    ("RETRYING", "CANCELLED"),
    ("RETRYING", "FAILED"),
}
STATES = ["CREATED", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"]
OWNER = "worker-a:1"


def job_in(store: JobStore, state: str) -> Job:
    """A fresh job brought to ``state`` by legal moves (running ones leased to OWNER)."""
    job = store.create("t.demo", {"n": 1}, max_attempts=5)
    path = {
        "CREATED": [],
        "RUNNING": ["RUNNING"],
        "RETRYING": ["RUNNING", "RETRYING"],
        "COMPLETED": ["RUNNING", "COMPLETED"],
        "FAILED": ["FAILED"],
        "CANCELLED": ["CANCELLED"],
    }[state]
    previous = "CREATED"
    for step in path:
        fence = OWNER if previous == "RUNNING" else None
        job = store.transition(job.id, State(step), owner=OWNER, fence=fence)
        previous = step
    assert job.state == state
    return job


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATES, STATES)))
def test_every_pair_of_states_is_allowed_or_refused_as_designed(
    store: JobStore, current: str, target: str
) -> None:
    job = job_in(store, current)
    fence = OWNER if current == "RUNNING" else None
    if (current, target) in ALLOWED:
        moved = store.transition(job.id, State(target), owner="worker-b:1", fence=fence)
        assert moved.state == target
        assert [h.state for h in moved.history[-2:]] == [current, target]
        assert store.get(job.id) == moved
    else:
        with pytest.raises(IllegalTransitionError) as refused:
            store.transition(job.id, State(target), owner="worker-b:1", fence=fence)
        assert refused.value.current == current
        assert refused.value.requested == target
        assert store.get(job.id) == job, "a refused move must write nothing"


def test_a_full_lifecycle_records_history_times_and_result(store: JobStore) -> None:
    created = store.create("t.demo", {"n": 3, "text": "héllo"}, max_attempts=2)
    assert created.state is State.CREATED
    assert (created.attempts, created.max_attempts) == (0, 2)
    assert created.payload == {"n": 3, "text": "héllo"}
    assert created.started_at is None
    assert created.finished_at is None

    running = store.transition(created.id, State.RUNNING, owner=OWNER, reason="picked up")
    assert running.attempts == 1
    assert running.started_at is not None

    done = store.transition(running.id, State.COMPLETED, fence=OWNER, result={"sum": 6})
    assert done.result == {"sum": 6}
    assert done.terminal
    assert done.finished_at is not None
    assert [(h.state, h.attempt, h.reason) for h in done.history] == [
        (State.CREATED, 0, None),
        (State.RUNNING, 1, "picked up"),
        (State.COMPLETED, 1, None),
    ]
    instants = [h.at for h in done.history]
    assert instants == sorted(instants)
    assert done.created_at == instants[0]
    assert done.updated_at == instants[-1]
    assert done.model_dump(mode="json")["created_at"].endswith("Z")


def test_running_job_moves_only_under_its_live_lease(store: JobStore) -> None:
    job = job_in(store, "RUNNING")
    for fence in ("worker-b:9", None):
        with pytest.raises(StaleLeaseError) as stale:
            store.transition(job.id, State.COMPLETED, fence=fence, result=1)
        assert stale.value.holder == OWNER
    with pytest.raises(LeaseActiveError) as active:
        store.transition(job.id, State.RETRYING, takeover=True, reason="worker lost")
    assert active.value.remaining_ms > 0
    assert store.get(job.id) == job


def test_a_stale_attempt_cannot_commit_after_a_takeover(
    redis_client: redis.Redis, settings: Any
) -> None:
    store = JobStore(redis_client, prefix=settings.prefix, lease_seconds=0.05)
    job = job_in(store, "RUNNING")
    # The first worker stalls; its lease runs out and another worker takes the job over.
    redis_client.hset(store.keys.job(job.id), "lease_expires_ms", 0)
    lost = store.transition(job.id, State.RETRYING, takeover=True, reason="worker lost")
    assert lost.history[-1].reason == "worker lost"
    retaken = store.transition(job.id, State.RUNNING, owner="worker-b:2")
    assert retaken.attempts == 2

    with pytest.raises(StaleLeaseError) as stale:
        store.transition(job.id, State.COMPLETED, fence=OWNER, result="old")
    assert (stale.value.owner, stale.value.holder) == (OWNER, "worker-b:2")
    with pytest.raises(StaleLeaseError):
        store.renew_lease(job.id, OWNER)
    with pytest.raises(StaleLeaseError):
        store.report_progress(job.id, OWNER, Progress(fraction=0.9))
    assert store.get(job.id) == retaken

    done = store.transition(job.id, State.COMPLETED, fence="worker-b:2", result="new")
    assert done.result == "new"
    assert [h.attempt for h in done.history] == [0, 1, 1, 2, 2]


def test_lease_renewal_extends_and_reports_the_cancel_flag(store: JobStore) -> None:
    job = job_in(store, "RUNNING")
    first = store.renew_lease(job.id, OWNER)
    assert not first.cancel_requested
    assert store.cancel(job.id).outcome is CancelOutcome.REQUESTED
    second = store.renew_lease(job.id, OWNER)
    assert second.cancel_requested
    assert second.expires_ms >= first.expires_ms
    assert store.redis.zscore(store.keys.leases, job.id) == second.expires_ms
    store.transition(job.id, State.CANCELLED, fence=OWNER)
    assert store.redis.zscore(store.keys.leases, job.id) is None


def test_progress_lands_in_the_document(store: JobStore) -> None:
    job = job_in(store, "RUNNING")
    store.report_progress(job.id, OWNER, Progress(fraction=0.25, message="a quarter"))
    assert store.get(job.id).progress == Progress(fraction=0.25, message="a quarter")


def test_attempts_never_exceed_max_attempts(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=2)
    for attempt in (1, 2):
        store.transition(job.id, State.RUNNING, owner=f"w:{attempt}")
        store.transition(job.id, State.RETRYING, fence=f"w:{attempt}")
    with pytest.raises(AttemptsExhaustedError) as exhausted:
        store.transition(job.id, State.RUNNING, owner="w:3")
    assert (exhausted.value.attempts, exhausted.value.max_attempts) == (2, 2)
    error = ErrorInfo(type="ValueError", message="boom", retryable=True)
    failed = store.transition(job.id, State.FAILED, error=error, reason="attempts exhausted")
    assert failed.attempts == 2
    assert failed.error == error


def test_expected_state_is_checked_by_redis(store: JobStore) -> None:
    job = job_in(store, "RETRYING")
    with pytest.raises(IllegalTransitionError) as refused:
        store.transition(job.id, State.CANCELLED, expected=[State.CREATED])
    assert "expected CREATED" in str(refused.value)
    assert store.transition(job.id, State.CANCELLED, expected=[State.RETRYING]).terminal


@pytest.mark.parametrize(
    ("state", "outcome", "final"),
    [
        ("CREATED", CancelOutcome.CANCELLED, "CANCELLED"),
        ("RETRYING", CancelOutcome.CANCELLED, "CANCELLED"),
        ("RUNNING", CancelOutcome.REQUESTED, "RUNNING"),
        ("CANCELLED", CancelOutcome.ALREADY_CANCELLED, "CANCELLED"),
        ("COMPLETED", CancelOutcome.FINISHED, "COMPLETED"),
        ("FAILED", CancelOutcome.FINISHED, "FAILED"),
    ],
)
def test_cancel_covers_every_state(
    store: JobStore, state: str, outcome: CancelOutcome, final: str
) -> None:
    job = job_in(store, state)
    result = store.cancel(job.id)
    assert result.outcome is outcome
    assert result.job.state == final
    assert result.job.cancel_requested == (state in ("CREATED", "RETRYING", "RUNNING"))
    if outcome in (CancelOutcome.ALREADY_CANCELLED, CancelOutcome.FINISHED):
        assert result.job == job


def test_cancel_of_a_running_job_is_published(store: JobStore) -> None:
    job = job_in(store, "RUNNING")
    pubsub = store.redis.pubsub()
    pubsub.subscribe(store.keys.cancel_channel)
    assert pubsub.get_message(timeout=1.0)["type"] == "subscribe"  # type: ignore[index]
    store.cancel(job.id)
    message = pubsub.get_message(timeout=1.0)
    pubsub.close()
    assert message is not None
    assert message["data"] == job.id


def test_history_never_goes_back_when_the_clock_does(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    future_us = int(job.created_at.timestamp() * 1_000_000) + 3_600_000_000
    store.redis.hset(store.keys.job(job.id), "updated_us", future_us)
    moved = store.transition(job.id, State.RUNNING, owner=OWNER)
    assert moved.history[-1].at > moved.history[0].at
    assert int(moved.history[-1].at.timestamp() * 1_000_000) == future_us


def test_observer_sees_each_transition_and_cannot_break_it(
    redis_client: redis.Redis, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, State, State]] = []

    def observer(job: Job, old: State, new: State) -> None:
        seen.append((job.id, old, new))
        if new is State.COMPLETED:
            raise RuntimeError("observer bug")

    store = JobStore(redis_client, prefix=settings.prefix, observer=observer)
    job = store.create("t.demo", {}, max_attempts=1)
    store.transition(job.id, State.RUNNING, owner=OWNER)
    done = store.transition(job.id, State.COMPLETED, fence=OWNER)
    other = store.create("t.demo", {}, max_attempts=1)
    store.cancel(other.id)
    assert done.state is State.COMPLETED
    assert store.get(job.id).state is State.COMPLETED
    assert seen == [
        (job.id, State.CREATED, State.RUNNING),
        (job.id, State.RUNNING, State.COMPLETED),
        (other.id, State.CREATED, State.CANCELLED),
    ]
    assert "observer bug" in caplog.text


def test_unknown_and_malformed_ids_are_not_found(store: JobStore) -> None:
    for job_id in (str(uuid.uuid4()), "nope", "{x}", ""):
        with pytest.raises(JobNotFoundError):
            store.get(job_id)
        with pytest.raises(JobNotFoundError):
            store.transition(job_id, State.CANCELLED)
        with pytest.raises(JobNotFoundError):
            store.cancel(job_id)


def test_create_refuses_a_taken_id_and_unserializable_payloads(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    with pytest.raises(JobExistsError):
        store.create("t.demo", {"other": True}, max_attempts=1, job_id=job.id)
    assert store.get(job.id) == job
    with pytest.raises(SerializationError):
        store.create("t.demo", {"when": object()}, max_attempts=1)
    with pytest.raises(SerializationError):
        store.create("t.demo", {"x": float("nan")}, max_attempts=1)
    with pytest.raises(ValueError, match="max_attempts"):
        store.create("t.demo", {}, max_attempts=0)
    assert len(store.list_jobs().items) == 1


def test_an_unserializable_result_writes_nothing(store: JobStore) -> None:
    job = job_in(store, "RUNNING")
    with pytest.raises(SerializationError, match="result"):
        store.transition(job.id, State.COMPLETED, fence=OWNER, result={1, 2})
    assert store.get(job.id) == job
