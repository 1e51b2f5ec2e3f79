"""Idempotent creation and discarding a submission that could not be queued."""

from __future__ import annotations

import threading

import pytest

from orchestrator_core import IdempotencyConflictError, IllegalTransitionError, JobNotFoundError
from orchestrator_core.store import Created, JobStore


def test_a_repeated_request_gets_the_first_job(store: JobStore) -> None:
    first = store.create_once("t.demo", {"n": 1}, max_attempts=2, idempotency_key="k1")
    again = store.create_once("t.demo", {"n": 1}, max_attempts=2, idempotency_key="k1")
    assert first.created
    assert not again.created
    assert again.job == first.job
    assert len(store.list_jobs().items) == 1


@pytest.mark.parametrize(
    ("job_type", "payload", "attempts"),
    [("t.other", {"n": 1}, 2), ("t.demo", {"n": 2}, 2), ("t.demo", {"n": 1}, 3)],
)
def test_the_same_key_for_another_request_is_refused(
    store: JobStore, job_type: str, payload: dict[str, int], attempts: int
) -> None:
    first = store.create_once("t.demo", {"n": 1}, max_attempts=2, idempotency_key="k1")
    with pytest.raises(IdempotencyConflictError) as conflict:
        store.create_once(job_type, payload, max_attempts=attempts, idempotency_key="k1")
    assert conflict.value.job_id == first.job.id
    assert len(store.list_jobs().items) == 1


def test_racing_requests_with_one_key_create_one_job(store: JobStore) -> None:
    results: list[Created] = []
    barrier = threading.Barrier(20)

    def request() -> None:
        barrier.wait()
        results.append(store.create_once("t.demo", {}, max_attempts=1, idempotency_key="race"))

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.created for r in results) == 1
    assert len({r.job.id for r in results}) == 1
    assert len(store.list_jobs().items) == 1


def test_a_discarded_submission_leaves_no_trace(store: JobStore) -> None:
    kept = store.create("t.demo", {}, max_attempts=1)
    gone = store.create_once("t.demo", {}, max_attempts=1, idempotency_key="retry-me").job
    store.discard(gone.id)
    with pytest.raises(JobNotFoundError):
        store.get(gone.id)
    assert [job.id for job in store.list_jobs().items] == [kept.id]
    assert [job.id for job in store.list_jobs(state="CREATED", job_type="t.demo").items] == [
        kept.id
    ]
    assert gone.id not in dict(store.redis.zrange(store.keys.outbox, 0, -1, withscores=True))
    # The client was told the submission failed, so its retry with the key makes a new job.
    retried = store.create_once("t.demo", {}, max_attempts=1, idempotency_key="retry-me")
    assert retried.created
    assert retried.job.id != gone.id


def test_only_a_job_that_never_started_can_be_discarded(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    store.start(job.id, 1, "w:1")
    with pytest.raises(IllegalTransitionError):
        store.discard(job.id)
    assert store.get(job.id).attempts == 1
