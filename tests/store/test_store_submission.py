"""Tickets: one request's jobs, created together or not at all, many tickets a call."""

from __future__ import annotations

import pytest

from orchestrator_core import IdempotencyConflictError, JobExistsError, JobNotFoundError, State
from orchestrator_core.store import JobStore, NewJob, Submitted, Ticket


def new(n: int, **options: object) -> NewJob:
    return NewJob("t.demo", {"n": n}, 2, **options)  # type: ignore[arg-type]


def test_each_ticket_of_a_call_has_its_own_outcome(store: JobStore) -> None:
    taken = store.create("t.demo", {"n": 0}, max_attempts=1)
    store.create_once("t.demo", {"n": 1}, max_attempts=2, idempotency_key="k")

    fresh, conflict, clash, batch = store.submit(
        [
            Ticket((new(2),)),
            Ticket((new(3),), "k"),
            Ticket((new(4), new(5, job_id=taken.id))),
            Ticket(tuple(new(n) for n in range(6, 9))),
        ]
    )

    assert isinstance(fresh, Submitted)
    assert fresh.created
    assert isinstance(conflict, IdempotencyConflictError)
    assert isinstance(clash, JobExistsError)
    assert clash.job_id == taken.id
    assert isinstance(batch, Submitted)
    assert [job.payload["n"] for job in batch.jobs] == [6, 7, 8]
    created = {job.payload["n"] for job in store.list_jobs().items}
    assert created == {0, 1, 2, 6, 7, 8}, "a ticket with a taken id creates none of its jobs"


def test_a_repeated_batch_gets_its_first_jobs(store: JobStore) -> None:
    jobs = tuple(new(n) for n in range(3))
    [first] = store.submit([Ticket(jobs, "batch")])
    [again] = store.submit([Ticket(jobs, "batch")])
    [other] = store.submit([Ticket(jobs[:2], "batch")])
    assert isinstance(first, Submitted)
    assert isinstance(again, Submitted)
    assert (again.created, again.jobs) == (False, first.jobs)
    assert isinstance(other, IdempotencyConflictError)


def test_a_group_whose_job_started_is_kept_and_the_others_go(store: JobStore) -> None:
    [started, waiting] = store.submit([Ticket((new(1), new(2))), Ticket((new(3),), "retry")])
    assert isinstance(started, Submitted)
    assert isinstance(waiting, Submitted)
    store.start(started.jobs[1].id, 1, "w:1")  # its message got through after all

    kept = store.discard_groups([[j.id for j in started.jobs], [j.id for j in waiting.jobs]])

    assert kept == [0]
    assert store.get(started.jobs[0].id).state is State.CREATED
    with pytest.raises(JobNotFoundError):
        store.get(waiting.jobs[0].id)
    # The key of a discarded request is free again: the client's retry makes a new job.
    [retried] = store.submit([Ticket((new(3),), "retry")])
    assert isinstance(retried, Submitted)
    assert retried.created
