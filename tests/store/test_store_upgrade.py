"""A deployment written by the earlier layout keeps working: nothing lost, nothing twice.

The earlier store kept each job's history in a list of its own (see test_records.py),
counted the metrics with each transition, and kept the outbox and the retries in one
schedule. These tests write what it left behind and check the store takes it over.
"""

from __future__ import annotations

import time

import redis

from orchestrator_core import State
from orchestrator_core.store import Claim, JobStore
from orchestrator_core.telemetry.metrics import JobMetrics


def test_counters_of_the_earlier_layout_are_kept_and_not_counted_again(
    store: JobStore, redis_client: redis.Redis
) -> None:
    # Transitions the earlier script both streamed and counted as it went.
    for _ in range(3):
        store.create("t.old", {}, max_attempts=1)
    redis_client.hset(store.keys.metrics, mapping={"t|t.old|CREATED": 3, "t|t.gone|FAILED": 2})

    store.create("t.old", {}, max_attempts=1)  # after the upgrade
    store.fold_metrics()

    metrics = JobMetrics.decode(redis_client.hgetall(store.keys.metrics))
    assert metrics.transitions == {("t.old", "CREATED"): 3, ("t.gone", "FAILED"): 2}
    assert redis_client.smembers(store.keys.job_types) == {"t.old", "t.gone"}


def test_the_earlier_schedule_is_still_published_and_then_empty(
    store: JobStore, redis_client: redis.Redis
) -> None:
    retrying = store.create("t.old", {}, max_attempts=3)
    store.start(retrying.id, 1, "w:1")
    store.transition(retrying.id, State.RETRYING, fence="w:1", retry_in=3600)
    finished = store.create("t.old", {}, max_attempts=1)
    store.transition(finished.id, State.CANCELLED)
    # Where the earlier layout kept both, due now; the new schedule knows neither.
    redis_client.delete(store.keys.retries)
    redis_client.zadd(store.keys.legacy_dispatch, {retrying.id: 0, finished.id: 0})

    claims = store.claim_due(visibility_seconds=0.05)

    assert claims == [Claim(retrying.id, store.keys.queue("t.old"), 2)]
    assert store.start(retrying.id, 2, "w:2").started
    time.sleep(0.1)  # past the claim's visibility: the entry is due again, for a started job
    assert store.claim_due() == []
    assert redis_client.zcard(store.keys.legacy_dispatch) == 0
