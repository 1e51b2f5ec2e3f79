"""Starting attempts from messages, the outbox and retry schedule, and the sweep's claims."""

from __future__ import annotations

import threading

import redis

from orchestrator_core import ErrorInfo, Job, State
from orchestrator_core.settings import Settings
from orchestrator_core.store import Claim, JobStore


def make_store(client: redis.Redis, settings: Settings, **options: float) -> JobStore:
    return JobStore(client, prefix=settings.prefix, **options)


def expire_lease(store: JobStore, job_id: str) -> None:
    """What a dead worker leaves behind: a lease nobody renews, now in the past."""
    store.redis.hset(store.keys.job(job_id), "lease_expires_ms", 0)
    store.redis.zadd(store.keys.leases, {job_id: 0})


def outbox_entries(store: JobStore) -> dict[str, float]:
    return dict(store.redis.zrange(store.keys.outbox, 0, -1, withscores=True))


def retry_entries(store: JobStore) -> dict[str, float]:
    return dict(store.redis.zrange(store.keys.retries, 0, -1, withscores=True))


def dispatch_entries(store: JobStore) -> dict[str, float]:
    """Every job the sweep would publish once due: the outbox and the retry schedule."""
    return {**outbox_entries(store), **retry_entries(store)}


def test_a_message_starts_its_attempt_once(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=3)
    assert job.id in outbox_entries(store), "a new job sits in the outbox"
    started = store.start(job.id, 1, "w:1")
    assert started.started
    assert started.reason == ""
    assert (started.job.state, started.job.attempts) == (State.RUNNING, 1)
    store.dispatched([(job.id, 1)])  # the confirm may come after the start
    assert job.id not in dispatch_entries(store)

    duplicate = store.start(job.id, 1, "w:2")
    assert (duplicate.started, duplicate.reason) == (False, "duplicate")
    assert duplicate.job == started.job
    stale = store.start(job.id, 2, "w:2")
    assert (stale.started, stale.reason) == (False, "stale message")
    store.transition(job.id, State.COMPLETED, fence="w:1")
    assert store.start(job.id, 1, "w:3").reason == "finished"


def test_a_message_for_another_attempt_is_stale(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=3)
    assert store.start(job.id, 2, "w:1").reason == "stale message"
    assert store.get(job.id) == job


def test_a_redelivered_message_takes_over_from_a_dead_worker(
    redis_client: redis.Redis, settings: Settings
) -> None:
    seen: list[tuple[State, State, State]] = []

    def observer(job: Job, old: State, new: State) -> None:
        seen.append((old, new, job.state))

    store = JobStore(redis_client, prefix=settings.prefix, observer=observer)
    job = store.create("t.demo", {}, max_attempts=3)
    store.start(job.id, 1, "w:1")
    expire_lease(store, job.id)
    taken = store.start(job.id, 1, "w:2")
    assert taken.started
    assert taken.job.attempts == 2
    assert [(h.state, h.attempt, h.reason) for h in taken.job.history] == [
        (State.CREATED, 0, None),
        (State.RUNNING, 1, None),
        (State.RETRYING, 1, "worker lost"),
        (State.RUNNING, 2, None),
    ]
    assert taken.job.error is not None
    assert taken.job.error.type == "WorkerLost"
    assert seen[-2:] == [
        (State.RUNNING, State.RETRYING, State.RETRYING),
        (State.RETRYING, State.RUNNING, State.RUNNING),
    ]
    assert store.redis.hget(store.keys.job(job.id), "lease_owner") == "w:2"
    assert job.id not in retry_entries(store)


def test_a_job_that_kills_every_worker_ends_failed(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=2)
    store.start(job.id, 1, "w:1")
    expire_lease(store, job.id)
    assert store.start(job.id, 1, "w:2").started
    expire_lease(store, job.id)
    last = store.start(job.id, 2, "w:3")
    assert (last.started, last.reason) == (False, "attempts exhausted")
    assert last.job.state is State.FAILED
    assert last.job.attempts == 2
    assert [h.state for h in last.job.history[-2:]] == [State.RETRYING, State.FAILED]
    assert job.id not in retry_entries(store)


def test_outbox_entries_fall_due_and_leave_when_dispatched(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = make_store(redis_client, settings, outbox_seconds=0)
    waiting = store.create("t.demo", {}, max_attempts=1, queue="q.custom")
    sent = store.create("t.demo", {}, max_attempts=1)
    store.dispatched([(sent.id, 1)])
    claims = store.claim_due(visibility_seconds=60)
    assert claims == [Claim(waiting.id, "q.custom", 1)]
    assert store.claim_due(visibility_seconds=60) == [], "a claim hides its entry"
    store.dispatched([(waiting.id, 1)])
    assert dispatch_entries(store) == {}


def test_outbox_entries_wait_for_their_time(store: JobStore) -> None:
    store.create("t.demo", {}, max_attempts=1)
    assert store.claim_due() == []


def test_retries_are_scheduled_in_redis_and_claimed_for_the_next_attempt(
    store: JobStore,
) -> None:
    soon = store.create("t.demo", {}, max_attempts=3)
    later = store.create("t.demo", {}, max_attempts=3)
    store.dispatched([(soon.id, 1), (later.id, 1)])
    error = ErrorInfo(type="ValueError", message="x", retryable=True)
    for job, delay in ((soon, 0.0), (later, 3600.0)):
        store.start(job.id, 1, "w:1")
        store.transition(job.id, State.RETRYING, fence="w:1", error=error, retry_in=delay)
    assert store.claim_due() == [Claim(soon.id, store.keys.queue("t.demo"), 2)]
    assert later.id in retry_entries(store)


def test_a_started_job_left_in_the_outbox_is_dropped_not_published(
    redis_client: redis.Redis, settings: Settings
) -> None:
    # Its publisher died before the confirm, but the message got through and it ran.
    store = make_store(redis_client, settings, outbox_seconds=0)
    job = store.create("t.demo", {}, max_attempts=3)
    store.start(job.id, 1, "w:1")
    assert job.id in outbox_entries(store)
    assert store.claim_due() == []
    assert outbox_entries(store) == {}


def test_a_late_confirmation_never_removes_a_newer_schedule(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=3)
    store.start(job.id, 1, "w:1")
    store.transition(job.id, State.RETRYING, fence="w:1", retry_in=3600)
    store.dispatched([(job.id, 1)])  # the confirmation of attempt 1's message, arriving late
    store.dispatched([(job.id, 1), (job.id, 1)])  # and twice, beside a retry's own (below)
    assert job.id in retry_entries(store)
    store.dispatched([(job.id, 2)])
    assert retry_entries(store) == {}


def test_expired_leases_are_claimed_for_takeover_and_finished_jobs_are_pruned(
    store: JobStore,
) -> None:
    lost = store.create("t.demo", {}, max_attempts=3)
    done = store.create("t.demo", {}, max_attempts=3)
    store.dispatched([(lost.id, 1), (done.id, 1)])
    for job in (lost, done):
        store.start(job.id, 1, f"w:{job.id}")
        expire_lease(store, job.id)
    store.transition(done.id, State.COMPLETED, takeover=True)
    assert store.claim_due() == [Claim(lost.id, store.keys.queue("t.demo"), 1)]
    assert store.redis.zscore(store.keys.leases, done.id) is None
    assert store.start(lost.id, 1, "w:new").started


def test_cancelling_a_retrying_job_unschedules_it(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=3)
    store.start(job.id, 1, "w:1")
    store.transition(job.id, State.RETRYING, fence="w:1", retry_in=0)
    store.cancel(job.id)
    assert retry_entries(store) == {}
    assert store.claim_due() == []


def test_concurrent_sweepers_claim_each_due_job_once(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = make_store(redis_client, settings, outbox_seconds=0)
    ids = {store.create("t.demo", {"n": n}, max_attempts=1).id for n in range(60)}
    claimed: list[Claim] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def sweeper() -> None:
        barrier.wait()
        for _ in range(5):
            got = store.claim_due(limit=7, visibility_seconds=60)
            with lock:
                claimed.extend(got)

    threads = [threading.Thread(target=sweeper) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.job_id for c in claimed) == sorted(ids)
