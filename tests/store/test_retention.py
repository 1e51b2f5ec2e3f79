"""Retention: a finished job is deleted with everything it owns once its retention after
``finished_at`` is over, atomically, and nothing else is (DESIGN section 10)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pluggy
import pytest
import redis
from pydantic import BaseModel
from redisserver import private_redis

from orchestrator_core import JobNotFoundError, JobType, Plugins, State, hookspecs
from orchestrator_core.models import Job
from orchestrator_core.plugins import LoadReport, PluginInfo, RegisteredJobType
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.states import TERMINAL_STATES
from orchestrator_core.store import Expired, JobStore, NewJob, Submitted, Ticket
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.telemetry.metrics import JobMetrics

BRIEF = 0.2
"""Seconds of retention the tests wait out."""


@pytest.fixture
def retaining(redis_client: redis.Redis, settings: Settings) -> Callable[..., JobStore]:
    """A store of the test's prefix with the retention options given."""

    def make(**options: Any) -> JobStore:
        options.setdefault("retention_seconds", BRIEF)
        return JobStore(redis_client, prefix=settings.prefix, **options)

    return make


def finish(store: JobStore, state: State, job_type: str = "t.kept", **payload: Any) -> Job:
    """A new job driven to ``state`` through the store's own transitions."""
    job = store.create(job_type, payload, max_attempts=1)
    if state is State.CANCELLED:
        store.cancel(job.id)
    elif state in (State.COMPLETED, State.FAILED):
        store.start(job.id, 1, "w:1")
        store.end_attempt(job.id, state, fence="w:1", result={"n": 1})
    return store.get(job.id) if state in TERMINAL_STATES else job


def expire_all(store: JobStore, *, limit: int = 50) -> int:
    deleted = 0
    while True:
        step = store.delete_expired(limit=limit)
        deleted += step.deleted
        if not step.more:
            return deleted


def traces(client: redis.Redis, prefix: str, job_ids: set[str]) -> list[str]:
    """Every key under ``prefix`` that names one of ``job_ids``, or lists one in a sorted
    set, a set or a hash. The event stream is left out: its entries record what happened,
    and its cap trims them."""
    found = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = client.type(key)
        if any(job_id in key for job_id in job_ids):
            found.append(key)
        elif kind == "zset":
            found += [f"{key} {m}" for m in client.zrange(key, 0, -1) if m in job_ids]
        elif kind == "set":
            found += [f"{key} {m}" for m in client.smembers(key) if m in job_ids]
        elif kind == "hash":
            values = client.hgetall(key).values()
            found += [f"{key} {v}" for v in values if any(job_id in v for job_id in job_ids)]
    return found


def test_a_finished_job_is_deleted_with_every_key_it_owns(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    store = retaining()
    done = {state: finish(store, state) for state in TERMINAL_STATES}
    remembered = store.create_once("t.kept", {}, max_attempts=1, idempotency_key="k")
    store.cancel(remembered.job.id)
    # Started but never confirmed: its outbox entry waits for the sweep, which it outlives.
    unconfirmed = store.create("t.kept", {}, max_attempts=1)
    store.start(unconfirmed.id, 1, "w:2")
    store.end_attempt(unconfirmed.id, State.COMPLETED, fence="w:2")
    ids = {job.id for job in done.values()} | {remembered.job.id, unconfirmed.id}
    assert redis_client.zscore(store.keys.outbox, unconfirmed.id) is not None

    assert store.delete_expired().deleted == 0  # not yet: the retention is not over
    assert {job.id for job in store.list_jobs().items} == ids
    time.sleep(BRIEF + 0.1)
    assert expire_all(store) == len(ids)

    for job_id in ids:
        with pytest.raises(JobNotFoundError):
            store.get(job_id)
    assert store.list_jobs().items == ()
    for state in TERMINAL_STATES:
        assert store.list_jobs(state=state).items == ()
        assert store.list_jobs(state=state, job_type="t.kept").items == ()
    assert store.list_jobs(job_type="t.kept").items == ()
    assert traces(redis_client, store.keys.prefix, ids) == []
    left = set(redis_client.scan_iter(match=store.keys.pattern))
    keys = store.keys
    assert left <= {keys.sequence, keys.events, keys.metrics, keys.job_types}


def test_a_job_of_an_earlier_layout_goes_with_its_history_list(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    store = retaining()
    job = finish(store, State.CANCELLED)
    key = store.keys.job(job.id)
    # As the earlier layout stored it: the history in a list of its own.
    entries = [entry.model_dump_json() for entry in job.history]
    redis_client.hdel(key, "history", "transitions")
    redis_client.rpush(store.keys.history(job.id), *entries)
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 1
    assert redis_client.exists(key, store.keys.history(job.id)) == 0


def test_the_retention_of_a_type_overrides_the_setting(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    store = retaining(retention_seconds=3600, retention_by_type={"t.brief": BRIEF, "t.kept": 0})
    brief = finish(store, State.COMPLETED, "t.brief")
    usual = finish(store, State.COMPLETED, "t.usual")
    kept = finish(store, State.COMPLETED, "t.kept")
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 1
    with pytest.raises(JobNotFoundError):
        store.get(brief.id)
    assert store.get(usual.id) == usual
    assert store.get(kept.id) == kept
    # The setting's hour after finished_at; and no entry at all for a type that keeps.
    due = redis_client.zscore(store.keys.expiries, usual.id)
    assert due is not None
    assert usual.finished_at is not None
    assert abs(due / 1000 - (usual.finished_at.timestamp() + 3600)) < 0.01
    assert redis_client.zscore(store.keys.expiries, kept.id) is None


def test_a_type_may_keep_its_jobs_for_less_than_the_setting(
    retaining: Callable[..., JobStore],
) -> None:
    store = retaining(retention_seconds=3600, retention_by_type={"t.brief": BRIEF})
    brief = finish(store, State.FAILED, "t.brief")
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 1
    with pytest.raises(JobNotFoundError):
        store.get(brief.id)


class Nothing(BaseModel):
    pass


def _nothing(payload: Nothing, token: object) -> None:
    return None


def test_from_settings_takes_each_installed_type_s_retention(
    settings: Settings, redis_client: redis.Redis
) -> None:
    plugin = PluginInfo(name="p", distribution=None, version=None, value="p")
    types = [
        JobType(name="t.brief", payload=Nothing, execute=_nothing, retention=BRIEF),
        JobType(name="t.kept", payload=Nothing, execute=_nothing, retention=0),
        JobType(name="t.usual", payload=Nothing, execute=_nothing),
    ]
    manager = pluggy.PluginManager(hookspecs.hookspec.project_name)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(
        manager,
        {t.name: RegisteredJobType(t, plugin) for t in types},
        LoadReport(),
    )
    configured = load_settings(prefix=settings.prefix, retention_seconds=3600)
    store = JobStore.from_settings(configured, plugins=plugins)
    jobs = {t.name: finish(store, State.CANCELLED, t.name) for t in types}
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 1
    with pytest.raises(JobNotFoundError):
        store.get(jobs["t.brief"].id)
    assert redis_client.zscore(store.keys.expiries, jobs["t.kept"].id) is None
    assert redis_client.zscore(store.keys.expiries, jobs["t.usual"].id) is not None
    store.redis.close()


def test_zero_keeps_finished_jobs_for_good(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    store = retaining(retention_seconds=0)
    kept = [finish(store, state) for state in TERMINAL_STATES]
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 0
    assert redis_client.exists(store.keys.expiries) == 0
    assert [store.get(job.id) for job in kept] == kept
    # Nor is there anything for the walk to do: it sends nothing at all.
    assert store.adopt_finished() == 0
    assert redis_client.exists(store.keys.expiry_walk) == 0


def test_the_idempotency_record_goes_with_its_job(retaining: Callable[..., JobStore]) -> None:
    store = retaining()
    first = store.create_once("t.kept", {"n": 1}, max_attempts=1, idempotency_key="again")
    store.cancel(first.job.id)
    assert not store.create_once(
        "t.kept", {"n": 1}, max_attempts=1, idempotency_key="again"
    ).created
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 1
    assert store.redis.exists(store.keys.idempotency("again")) == 0

    second = store.create_once("t.kept", {"n": 1}, max_attempts=1, idempotency_key="again")
    assert second.created
    assert second.job.id != first.job.id
    assert store.get(second.job.id).state is State.CREATED


def test_a_key_reused_after_its_record_expired_keeps_its_new_record(
    retaining: Callable[..., JobStore],
) -> None:
    fleeting = retaining(idempotency_seconds=0.05)
    old = fleeting.create_once("t.kept", {}, max_attempts=1, idempotency_key="reused").job
    fleeting.cancel(old.id)
    time.sleep(0.1)  # the record is gone; the same key now makes another job
    store = retaining()
    new = store.create_once("t.kept", {"other": 1}, max_attempts=1, idempotency_key="reused")
    assert new.created
    time.sleep(BRIEF)
    assert store.delete_expired().deleted == 1  # the old job only
    repeat = store.create_once("t.kept", {"other": 1}, max_attempts=1, idempotency_key="reused")
    assert (repeat.created, repeat.job.id) == (False, new.job.id)


def test_deleting_jobs_leaves_the_metrics_counters_as_they_were(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    store = retaining()
    for state in TERMINAL_STATES:
        finish(store, state)
    store.fold_metrics()
    before = JobMetrics.decode(redis_client.hgetall(store.keys.metrics))
    assert before.transitions[("t.kept", "COMPLETED")] == 1
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 3
    store.fold_metrics()
    assert JobMetrics.decode(redis_client.hgetall(store.keys.metrics)) == before
    # The current counts are of the jobs there are: none now.
    assert all(count == 0 for count in store.counts().values())


def test_a_job_that_has_not_finished_is_never_deleted(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    store = retaining()
    created = store.create("t.kept", {}, max_attempts=3)
    running = store.create("t.kept", {}, max_attempts=3)
    store.start(running.id, 1, "w:run")
    retrying = store.create("t.kept", {}, max_attempts=3)
    store.start(retrying.id, 1, "w:retry")
    store.end_attempt(retrying.id, State.RETRYING, fence="w:retry", retry_in=3600)
    waiting = [created, running, retrying]
    # Even an entry that says otherwise (written by hand, say) deletes nothing.
    redis_client.zadd(store.keys.expiries, {job.id: 0 for job in waiting})
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired() == Expired(deleted=0, more=False)
    assert [store.get(job.id).state for job in waiting] == [
        State.CREATED,
        State.RUNNING,
        State.RETRYING,
    ]
    assert redis_client.zcard(store.keys.expiries) == 0
    # Once it finishes, its own retention counts from then.
    store.end_attempt(running.id, State.COMPLETED, fence="w:run")
    assert store.delete_expired().deleted == 0
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == 1
    with pytest.raises(JobNotFoundError):
        store.get(running.id)


def test_listings_never_show_a_half_deleted_job(
    retaining: Callable[..., JobStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = retaining()
    ids = submit_many(store, "t.list", 900)
    for n, job_id in enumerate(ids):
        if n % 2:
            store.cancel(job_id)
        else:
            store.start(job_id, 1, "w:1")
            store.end_attempt(job_id, State.COMPLETED, fence="w:1")
    time.sleep(BRIEF + 0.1)
    deleting = Expirer(store, limit=25)
    listed = 0
    with caplog.at_level(logging.ERROR), deleting:
        while deleting.running():
            for query in ({}, {"state": State.CANCELLED}, {"job_type": "t.list"}):
                listed += sum(whole_listing(store, limit=40, **query))
    assert deleting.deleted == 900
    assert listed > 0  # the listings saw jobs while they were being deleted
    assert caplog.records == []
    assert store.list_jobs().items == ()


class Expirer:
    """A sweeper's deletion in a thread of its own, until nothing more is due; with a
    ``barrier``, once every other party is ready too."""

    def __init__(
        self, store: JobStore, *, limit: int, barrier: threading.Barrier | None = None
    ) -> None:
        self.store = store
        self.limit = limit
        self.barrier = barrier
        self.deleted = 0
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            if self.barrier is not None:
                self.barrier.wait(10)
            self.deleted = expire_all(self.store, limit=self.limit)
        except BaseException as exc:
            self.errors.append(exc)

    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Expirer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(30)
        assert self.errors == []


def whole_listing(store: JobStore, *, limit: int, **query: Any) -> list[int]:
    """Page through a listing, checking that every page is full but the last and every
    job in it whole; returns the page sizes."""
    sizes = []
    cursor = None
    while True:
        page = store.list_jobs(limit=limit, cursor=cursor, **query)
        sizes.append(len(page.items))
        # An index entry whose job hash is gone would come out as a missing item.
        assert page.next_cursor is None or len(page.items) == limit
        for job in page.items:
            assert job.state in TERMINAL_STATES
            assert job.history[-1].state is job.state
            assert job.finished_at is not None
            assert set(job.payload) == {"n"}
        if page.next_cursor is None:
            return sizes
        cursor = page.next_cursor


def test_concurrent_sweepers_delete_each_job_once(
    retaining: Callable[..., JobStore], settings: Settings, redis_client: redis.Redis
) -> None:
    store = retaining()
    ids = submit_many(store, "t.race", 600)
    for job_id in ids:
        store.cancel(job_id)
    time.sleep(BRIEF + 0.1)
    clients = [connect_redis(settings) for _ in range(4)]
    together = threading.Barrier(len(clients))
    sweepers = [
        Expirer(
            JobStore(client, prefix=settings.prefix, retention_seconds=BRIEF),
            limit=10,
            barrier=together,
        )
        for client in clients
    ]
    with ExitStack() as running:
        for sweeper in sweepers:
            running.enter_context(sweeper)
    for client in clients:
        client.close()
    assert sum(sweeper.deleted for sweeper in sweepers) == len(ids)
    assert sum(sweeper.deleted > 0 for sweeper in sweepers) > 1
    assert traces(redis_client, settings.prefix, set(ids)) == []


def test_jobs_that_finished_without_an_expiry_are_given_one_by_the_walk(
    retaining: Callable[..., JobStore], redis_client: redis.Redis
) -> None:
    # Finished under a store that kept them for good, as an earlier layout did.
    before = retaining(retention_seconds=0)
    old = [finish(before, state) for state in TERMINAL_STATES]
    waiting = before.create("t.kept", {}, max_attempts=1)
    store = retaining(retention_by_type={"t.long": 3600})
    current = finish(store, State.COMPLETED, "t.long")
    due = redis_client.zscore(store.keys.expiries, current.id)

    adopted = 0
    for _ in range(10_000):  # SCAN slots of the whole Redis, the tests' keys among them
        adopted += store.adopt_finished(limit=100)
        if redis_client.hget(store.keys.expiry_walk, "done"):
            break
    assert adopted == len(old)
    assert redis_client.zscore(store.keys.expiries, current.id) == due  # not scored again
    assert redis_client.zscore(store.keys.expiries, waiting.id) is None
    assert store.adopt_finished() == 0
    for job in old:  # each scored from its own finished_at
        assert job.finished_at is not None
        due_ms = redis_client.zscore(store.keys.expiries, job.id)
        assert due_ms == round((job.finished_at.timestamp() + BRIEF) * 1000)
    time.sleep(BRIEF + 0.1)
    assert store.delete_expired().deleted == len(old)
    assert store.get(waiting.id).state is State.CREATED
    assert store.get(current.id) == current
    # Another process learns from Redis that the walk is over.
    assert retaining().adopt_finished() == 0


@pytest.fixture
def quiet_redis(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path) as url:
        yield url


def test_twenty_thousand_jobs_leave_redis_as_they_found_it(
    quiet_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's load test, on a Redis of its own: its memory is this test's alone."""
    settings = load_settings(
        redis_url=quiet_redis,
        prefix=f"test-{uuid.uuid4().hex[:12]}",
        events_max_length=1000,
        retention_seconds=1,
    )
    client = connect_redis(settings)
    store = JobStore.from_settings(settings)
    # The deployment at its steady state first: the script loaded, the event stream at
    # its cap, the counters there, every command run once (Redis keeps figures of each).
    churn(store, 1500)
    whole_listing(store, limit=500)
    whole_listing(store, limit=200, state=State.COMPLETED, job_type="t.load")
    time.sleep(1.1)
    assert sweep(settings) == 1500
    store.fold_metrics()
    baseline_memory = used_memory(client)
    baseline_keys = set(client.scan_iter(match=store.keys.pattern))

    churn(store, 20_000)
    assert client.zcard(store.keys.expiries) == 20_000
    assert used_memory(client) > 5 * baseline_memory
    time.sleep(1.1)
    listings = 0
    sweeper = JobStore.from_settings(settings)
    with caplog.at_level(logging.ERROR), Expirer(sweeper, limit=100) as deleting:
        while deleting.running():
            whole_listing(store, limit=500)
            whole_listing(store, limit=200, state=State.COMPLETED, job_type="t.load")
            listings += 1
    sweeper.redis.close()
    assert deleting.deleted == 20_000
    assert listings > 1
    assert caplog.records == []
    store.fold_metrics()

    assert set(client.scan_iter(match=store.keys.pattern)) == baseline_keys
    # Redis shrinks its emptied tables in its background cron: give it a few rounds.
    deadline = time.monotonic() + 10
    while abs(used_memory(client) - baseline_memory) > 0.1 * baseline_memory:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    after = used_memory(client)
    assert abs(after - baseline_memory) <= 0.1 * baseline_memory, (baseline_memory, after)
    store.redis.close()
    client.close()


def submit_many(store: JobStore, job_type: str, count: int) -> list[str]:
    """The ids of ``count`` new jobs, made through the batch path a request each, as the
    API's submitter makes them, a thousand requests a call."""
    ids: list[str] = []
    for first in range(0, count, 1000):
        numbers = range(first, min(count, first + 1000))
        submitted = store.submit([Ticket((NewJob(job_type, {"n": n}, 1),)) for n in numbers])
        ids += [result.jobs[0].id for result in submitted if isinstance(result, Submitted)]
    assert len(ids) == count
    return ids


def churn(store: JobStore, count: int) -> None:
    """Create ``count`` jobs and finish them all, a third each COMPLETED, FAILED and
    CANCELLED."""
    for n, job_id in enumerate(submit_many(store, "t.load", count)):
        if n % 3 == 0:
            store.cancel(job_id)
        else:
            store.start(job_id, 1, "w:1")
            ended = State.COMPLETED if n % 3 == 1 else State.FAILED
            store.end_attempt(job_id, ended, fence="w:1")


def sweep(settings: Settings, limit: int = 500) -> int:
    """Delete every expired job as a sweeper does, on a connection of its own that is
    closed after, so the memory compared holds no client of it; returns how many."""
    store = JobStore.from_settings(settings)
    try:
        return expire_all(store, limit=limit)
    finally:
        store.redis.close()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])
