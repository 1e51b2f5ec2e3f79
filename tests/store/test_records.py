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
    "entry",
    ['{"state": "CREATED", "at": "1", "attempt": 0, "reason": 5}', '{"state": "NOPE"}', "]"],
)
def test_a_malformed_history_entry_is_reported(
    store: JobStore, redis_client: redis.Redis, entry: str
) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    redis_client.rpush(store.keys.history(job.id), entry)
    with pytest.raises(CorruptJobError, match="history"):
        store.get(job.id)


def test_a_missing_field_is_reported(store: JobStore) -> None:
    job = store.create("t.demo", {}, max_attempts=1)
    store.redis.hdel(store.keys.job(job.id), "type")
    with pytest.raises(CorruptJobError):
        store.get(job.id)
    assert store.list_jobs().items == ()
    assert store.transition(store.create("t.demo", {}, max_attempts=1).id, State.CANCELLED).terminal
