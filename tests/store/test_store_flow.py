"""Flow control in the store (DESIGN section 9): each start checked against the limits
in one atomic step, and every way a job stops waiting or gives its slot back."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from prometheus_client.registry import CollectorRegistry

from api.collector import StoreCollector
from orchestrator_core import Job, State
from orchestrator_core.exceptions import IllegalTransitionError, JobNotFoundError
from orchestrator_core.flow import Limits
from orchestrator_core.sealing import Sealer
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore, NewJob, Ticket


def limited(client: redis.Redis, settings: Settings, **limits: Any) -> JobStore:
    return JobStore(client, prefix=settings.prefix, limits_by_type={"t.flow": Limits(**limits)})


def new(store: JobStore, **fields: Any) -> Job:
    [result] = store.submit([Ticket((NewJob("t.flow", {"n": 1}, 3, **fields),))])
    assert not isinstance(result, Exception)
    return result.jobs[0]


def deferred(store: JobStore) -> dict[str, float]:
    entries: list[tuple[str, float]] = store.redis.zrange(
        store.keys.deferred, 0, -1, withscores=True
    )  # type: ignore[assignment]
    return dict(entries)


def test_a_concurrency_limit_parks_the_job_over_it_and_a_finish_wakes_the_next(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings, concurrency=2)
    jobs = [new(store) for _ in range(4)]
    assert [store.start(job.id, 1, f"w:{n}").started for n, job in enumerate(jobs)] == [
        True,
        True,
        False,
        False,
    ]
    third = store.start(jobs[2].id, 1, "w:again")
    assert (third.started, third.reason) == (False, "waiting: concurrency")
    assert store.get(jobs[2].id).waiting == "concurrency"
    assert store.flow_usage().waiting == {("t.flow", "concurrency"): 2}
    assert store.flow_usage().running == {"t.flow": 2}
    assert jobs[2].id not in deferred(store)

    store.transition(jobs[0].id, State.COMPLETED, fence="w:0")
    # The oldest waiter is due now, for the sweep to publish; the other still waits.
    assert jobs[2].id in deferred(store)
    assert jobs[3].id not in deferred(store)
    claims = {claim.job_id for claim in store.claim_due()}
    assert jobs[2].id in claims
    assert store.start(jobs[2].id, 1, "w:2").started
    assert store.get(jobs[2].id).waiting is None
    assert store.flow_usage().waiting == {("t.flow", "concurrency"): 1}
    assert store.flow_usage().running == {"t.flow": 2}


def test_a_woken_waiter_that_is_cancelled_passes_the_slot_on(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings, concurrency=1)
    running, first, second = (new(store) for _ in range(3))
    assert store.start(running.id, 1, "w:0").started
    for job in (first, second):
        assert not store.start(job.id, 1, "w:x").started
    store.transition(running.id, State.FAILED, fence="w:0")
    assert first.id in deferred(store)
    store.cancel(first.id)
    # The wake went to the next waiter: no freed slot is left with nobody coming for it.
    assert second.id in deferred(store)
    assert first.id not in deferred(store)
    assert store.start(second.id, 1, "w:2").started
    assert store.flow_usage().waiting == {}


def test_a_lost_worker_gives_its_slot_back_when_its_lease_is_taken_over(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings, concurrency=1)
    lost, waiter = new(store), new(store)
    assert store.start(lost.id, 1, "w:dead").started
    assert not store.start(waiter.id, 1, "w:1").started
    store.redis.hset(store.keys.job(lost.id), "lease_expires_ms", 0)
    # The redelivered message takes the job over: the old attempt fails, the slot frees,
    # and the new attempt takes it again (the waiter was woken and will find it taken).
    taken = store.start(lost.id, 1, "w:new")
    assert taken.started
    assert taken.job.attempts == 2
    assert store.flow_usage().running == {"t.flow": 1}
    assert not store.start(waiter.id, 1, "w:1").started
    assert store.get(waiter.id).waiting == "concurrency"


def test_per_key_limits_count_each_key_apart(redis_client: redis.Redis, settings: Settings) -> None:
    store = limited(redis_client, settings, concurrency_per_key=1)
    a1, a2, b1, free = (
        new(store, concurrency_key="a"),
        new(store, concurrency_key="a"),
        new(store, concurrency_key="b"),
        new(store),
    )
    assert store.start(a1.id, 1, "w").started
    assert not store.start(a2.id, 1, "w").started
    assert store.start(b1.id, 1, "w").started
    assert store.start(free.id, 1, "w").started  # no key: the per-key limit does not apply
    assert store.get(a2.id).waiting == "concurrency"
    store.transition(b1.id, State.COMPLETED, fence="w")
    assert a2.id not in deferred(store)  # b's slot is not a's
    store.transition(a1.id, State.COMPLETED, fence="w")
    assert a2.id in deferred(store)


def test_a_limit_set_while_jobs_run_counts_them(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings)
    running = [new(store) for _ in range(2)]
    for job in running:
        assert store.start(job.id, 1, "w").started
    store.override("t.flow", {"concurrency": 2})
    late = new(store)
    assert store.start(late.id, 1, "w").reason == "waiting: concurrency"
    store.transition(running[0].id, State.COMPLETED, fence="w")
    assert store.start(late.id, 1, "w").started


def test_a_rate_limit_gives_a_start_too_soon_a_later_one(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings, rate_limit="10/s")
    first, second, third = new(store), new(store), new(store)
    assert store.start(first.id, 1, "w").started
    assert store.start(second.id, 1, "w").reason == "waiting: rate"
    assert store.start(third.id, 1, "w").reason == "waiting: rate"
    due = deferred(store)
    # Reserved 100 ms apart: the second's start comes 100 ms after the first's, the third's after.
    assert due[third.id] - due[second.id] == pytest.approx(100, abs=2)
    assert store.get(second.id).waiting == "rate"
    time.sleep(max(0.0, (due[second.id] / 1000) - time.time()) + 0.01)
    assert store.start(second.id, 1, "w").started  # its reservation holds: no second wait


def test_a_delayed_job_waits_in_the_deferred_schedule(store: JobStore) -> None:
    not_before = int(time.time() * 1_000_000) + 60_000_000
    job = new(store, not_before_us=not_before)
    assert job.waiting == "time"
    assert job.id not in store.redis.zrange(store.keys.outbox, 0, -1)
    assert deferred(store)[job.id] == pytest.approx(not_before / 1000, abs=1)
    assert store.claim_due() == []
    due = store.claim()
    assert due.due_in is not None
    assert 55 < due.due_in <= 60
    # A message that arrives early anyway starts nothing.
    assert store.start(job.id, 1, "w").reason == "waiting: time"
    assert store.flow_usage().waiting == {("t.flow", "time"): 1}
    cancelled = store.cancel(job.id).job
    assert (cancelled.state, cancelled.waiting) == (State.CANCELLED, None)
    assert deferred(store) == {}
    assert store.flow_usage().waiting == {}


def test_a_paused_type_parks_its_jobs_until_the_override_goes(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings)
    assert store.override("t.flow", {"paused": True, "rate_limit": "5/m"}) == {
        "paused": True,
        "rate_limit": "5/m",
    }
    job = new(store)
    assert store.start(job.id, 1, "w").reason == "waiting: paused"
    assert store.overrides() == {"t.flow": {"paused": True, "rate_limit": "5/m"}}
    assert store.override("t.flow", {"paused": None}) == {"rate_limit": "5/m"}
    assert job.id in deferred(store)
    assert store.get(job.id).waiting == "time"
    assert store.override("t.flow", {"rate_limit": None}) == {}
    assert store.overrides() == {}
    assert store.start(job.id, 1, "w").started


def test_rerun_copies_a_finished_job(store: JobStore) -> None:
    sealed = Sealer().seal({"n": 1, "secret": "s3cret"})
    [result] = store.submit(
        [Ticket((NewJob("t.flow", {"n": 1}, 2, sealed=sealed, priority=7, concurrency_key="k"),))]
    )
    assert not isinstance(result, Exception)
    old = result.jobs[0]
    with pytest.raises(IllegalTransitionError):
        store.rerun(old.id)
    store.cancel(old.id)
    again, queue = store.rerun(old.id)
    assert again.id != old.id
    assert again.state is State.CREATED
    assert (again.type, again.payload, again.max_attempts) == (old.type, old.payload, 2)
    assert (again.priority, again.concurrency_key, again.rerun_of) == (7, "k", old.id)
    assert queue == store.keys.queue("t.flow")
    assert store.start(again.id, 1, "w").sealed == sealed.text
    with pytest.raises(JobNotFoundError):
        store.rerun("00000000-0000-0000-0000-000000000000")


def test_the_metrics_show_waiting_jobs_and_limits(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = limited(redis_client, settings, concurrency=1)
    running, waiting = new(store), new(store)
    store.start(running.id, 1, "w")
    store.start(waiting.id, 1, "w")
    store.override("t.other", {"paused": True})
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    assert (
        registry.get_sample_value(
            "orchestrator_jobs_waiting", {"type": "t.flow", "reason": "concurrency"}
        )
        == 1
    )
    assert registry.get_sample_value("orchestrator_concurrency_in_use", {"type": "t.flow"}) == 1
    assert registry.get_sample_value("orchestrator_concurrency_limit", {"type": "t.flow"}) == 1
    assert registry.get_sample_value("orchestrator_job_type_paused", {"type": "t.other"}) == 1
