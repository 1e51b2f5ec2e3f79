"""Decoding stored job documents: every malformed field is reported, naming job and field."""

from __future__ import annotations

import pytest
import redis

from orchestrator_core import CorruptJobError, State
from orchestrator_core.store import JobStore


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("payload", "{not json", "payload"),
        ("payload", "[1, 2]", "payload"),
        ("state", "SLEEPING", "unknown state SLEEPING"),
        ("attempts", "many", "timestamps"),
        ("created_us", "yesterday", "timestamps"),
        ("error", '{"type": 1}', "error"),
        ("progress", "[]", "progress"),
        ("result", "{", "result"),
    ],
)
def test_a_malformed_field_is_reported_and_nothing_crashes(
    store: JobStore, field: str, value: str, named: str
) -> None:
    job = store.create("t.demo", {"n": 1}, max_attempts=1)
    store.redis.hset(store.keys.job(job.id), field, value)
    with pytest.raises(CorruptJobError, match=named) as corrupt:
        store.get(job.id)
    assert corrupt.value.job_id == job.id


@pytest.mark.parametrize(
    "history",
    [
        '[{"state": "CREATED", "at": "1", "attempt": 0, "reason": 5}]',
        '[{"state": "NOPE"}]',
        "[1]",
        '{"state": "CREATED"}',
        "]",
    ],
)
def test_a_malformed_history_is_reported(
    store: JobStore, redis_client: redis.Redis, history: str
) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    redis_client.hset(store.keys.job(job.id), "history", history)
    with pytest.raises(CorruptJobError, match="history"):
        store.get(job.id)


def test_a_job_of_the_earlier_layout_is_read_and_moved_into_its_hash(
    store: JobStore, redis_client: redis.Redis
) -> None:
    # Before the history lived in the job hash it was a list of its own.
    job = store.create("t.demo", {}, max_attempts=1)
    key = store.keys.job(job.id)
    [entry] = redis_client.hget(key, "history")[1:-1].split("},{")
    redis_client.hdel(key, "history", "transitions")
    redis_client.rpush(store.keys.history(job.id), entry if entry.endswith("}") else entry + "}")
    assert store.get(job.id).history == job.history
    assert [j.id for j in store.list_jobs().items] == [job.id]

    cancelled = store.cancel(job.id).job

    assert [h.state for h in cancelled.history] == [State.CREATED, State.CANCELLED]
    assert redis_client.exists(store.keys.history(job.id)) == 0
    assert store.get(job.id) == cancelled


def test_a_missing_field_is_reported(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    store.redis.hdel(store.keys.job(job.id), "type")
    with pytest.raises(CorruptJobError):
        store.get(job.id)
    assert store.list_jobs().items == ()
    assert store.transition(store.create("t.demo", {}, max_attempts=1).id, State.CANCELLED).terminal
