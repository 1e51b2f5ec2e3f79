"""The event stream the store script writes with every transition, read back for real."""

from __future__ import annotations

import pytest
import redis
from journeys import completed_after_a_retry

from orchestrator_core import State
from orchestrator_core.exceptions import (
    IllegalTransitionError,
    InvalidQueryError,
    StaleLeaseError,
    StoreUnavailableError,
)
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.keys import Keys
from orchestrator_core.telemetry.events import EventLog, history_events, stream_id


def test_every_transition_is_one_event_in_order(store: JobStore) -> None:
    log = EventLog(store.redis, store.keys)
    start = log.last_id()
    job_id = completed_after_a_retry(store)

    events = log.read(start)

    assert [(e.job_id, e.state, e.previous, e.attempt, e.seq) for e in events] == [
        (job_id, State.CREATED, None, 0, 1),
        (job_id, State.RUNNING, State.CREATED, 1, 2),
        (job_id, State.RETRYING, State.RUNNING, 1, 3),
        (job_id, State.RUNNING, State.RETRYING, 2, 4),
        (job_id, State.COMPLETED, State.RUNNING, 2, 5),
    ]
    assert events[2].reason == "attempt failed"
    assert all(e.type == "demo.echo" for e in events)
    # The stream and the job's own history tell the same story, instant for instant.
    job = store.get(job_id)
    assert [(e.state, e.at, e.attempt, e.seq) for e in events] == [
        (e.state, e.at, e.attempt, e.seq) for e in history_events(job)
    ]
    assert events[-1].as_json()["at"] == job.history[-1].at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_reading_after_an_id_resumes_exactly_there(store: JobStore) -> None:
    log = EventLog(store.redis, store.keys)
    completed_after_a_retry(store)
    everything = log.read("0-0")
    middle = everything[2].id

    assert log.read(middle) == everything[3:]
    assert log.read(everything[-1].id) == []
    assert [e.id for e in log.read("0-0", count=2)] == [e.id for e in everything[:2]]


def test_cancel_and_takeover_are_events_too(store: JobStore) -> None:
    log = EventLog(store.redis, store.keys)
    queued = store.create("demo.echo", {}, max_attempts=2)
    store.cancel(queued.id)
    taken = store.create("demo.echo", {}, max_attempts=2)
    store.start(taken.id, 1, "w1")
    store.redis.hset(store.keys.job(taken.id), "lease_expires_ms", 1)  # the worker died
    store.start(taken.id, 1, "w2")  # its redelivered message

    states = [(e.job_id, e.state, e.reason) for e in log.read("0-0")]

    assert states == [
        (queued.id, State.CREATED, None),
        (queued.id, State.CANCELLED, "cancel requested"),
        (taken.id, State.CREATED, None),
        (taken.id, State.RUNNING, None),
        (taken.id, State.RETRYING, "worker lost"),
        (taken.id, State.RUNNING, None),
    ]


def test_a_discarded_submission_leaves_no_event(store: JobStore) -> None:
    log = EventLog(store.redis, store.keys)
    kept = store.create("demo.echo", {}, max_attempts=1)
    discarded = store.create("demo.echo", {}, max_attempts=1)
    store.discard(discarded.id)

    assert [e.job_id for e in log.read("0-0")] == [kept.id]


def test_a_refused_transition_writes_no_event(store: JobStore) -> None:
    log = EventLog(store.redis, store.keys)
    job = store.create("demo.echo", {}, max_attempts=1)
    before = log.read("0-0")
    with pytest.raises(StaleLeaseError):
        store.transition(job.id, State.COMPLETED, fence="nobody")
    with pytest.raises(IllegalTransitionError):
        store.transition(job.id, State.RETRYING, takeover=True)

    assert log.read("0-0") == before


def test_the_stream_is_capped(redis_client: redis.Redis, settings: Settings) -> None:
    store = JobStore(redis_client, prefix=settings.prefix, events_max_length=1000)
    for _ in range(1500):
        store.create("demo.echo", {}, max_attempts=1)

    length = redis_client.xlen(store.keys.events)

    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never below the cap.
    assert 1000 <= length < 1500


def test_blocking_read_wakes_on_a_new_transition(store: JobStore) -> None:
    log = EventLog(store.redis, store.keys)
    assert log.read(log.last_id(), block_ms=50) == []
    start = log.last_id()
    job = store.create("demo.echo", {}, max_attempts=1)

    assert [e.job_id for e in log.read(start, block_ms=1000)] == [job.id]


def test_history_events_resume_after_a_position(store: JobStore) -> None:
    job = store.get(completed_after_a_retry(store))

    replay = history_events(job, after=3)

    assert [(e.id, e.state) for e in replay] == [("4", State.RUNNING), ("5", State.COMPLETED)]
    assert replay[0].previous is State.RETRYING


@pytest.mark.parametrize("bad", ["", "abc", "1-", "-1", "1-2-3", "1 -2", "9" * 21 + "-0"])
def test_a_malformed_event_id_is_refused(bad: str) -> None:
    with pytest.raises(InvalidQueryError, match="not an event id"):
        stream_id(bad)


def test_a_down_redis_is_store_unavailable(closed_port: int) -> None:
    client = redis.Redis(port=closed_port, socket_connect_timeout=0.5, decode_responses=True)
    log = EventLog(client, Keys("nowhere"))
    with pytest.raises(StoreUnavailableError, match="event stream"):
        log.read("0-0")
