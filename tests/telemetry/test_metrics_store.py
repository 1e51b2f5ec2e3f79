"""The counters and histograms folded from the event stream the store script appends to."""

from __future__ import annotations

import multiprocessing
import time

from orchestrator_core import State
from orchestrator_core.models import ErrorInfo
from orchestrator_core.settings import load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.telemetry.metrics import (
    ATTEMPT_BUCKETS,
    SECONDS_BUCKETS,
    Histogram,
    JobMetrics,
)

ERROR = ErrorInfo(type="Boom", message="it broke", retryable=False)


def snapshot(store: JobStore) -> JobMetrics:
    store.fold_metrics()
    return JobMetrics.decode(store.redis.hgetall(store.keys.metrics))


def test_a_known_sequence_gives_known_figures(store: JobStore) -> None:
    done = store.create("demo.echo", {}, max_attempts=3)
    store.start(done.id, 1, "w")
    store.transition(done.id, State.RETRYING, fence="w", error=ERROR)
    store.start(done.id, 2, "w")
    time.sleep(0.06)
    store.transition(done.id, State.COMPLETED, fence="w")
    failed = store.create("demo.fail", {}, max_attempts=1)
    store.start(failed.id, 1, "w")
    store.transition(failed.id, State.FAILED, fence="w", error=ERROR)
    queued = store.create("demo.echo", {}, max_attempts=1)
    store.cancel(queued.id)
    running = store.create("demo.echo", {}, max_attempts=1)
    store.start(running.id, 1, "w")
    store.cancel(running.id)
    time.sleep(0.03)
    store.transition(running.id, State.CANCELLED, fence="w")
    discarded = store.create("demo.echo", {}, max_attempts=1)
    store.discard(discarded.id)

    metrics = snapshot(store)

    assert metrics.transitions == {
        ("demo.echo", "CREATED"): 3,
        ("demo.echo", "RUNNING"): 3,
        ("demo.echo", "RETRYING"): 1,
        ("demo.echo", "COMPLETED"): 1,
        ("demo.echo", "CANCELLED"): 2,
        ("demo.fail", "CREATED"): 1,
        ("demo.fail", "RUNNING"): 1,
        ("demo.fail", "FAILED"): 1,
    }
    # Queue wait: once per job that ever ran, on its first start only.
    waits = metrics.histograms["queue_wait"]
    assert {key: h.count for key, h in waits.items()} == {
        ("demo.echo", ""): 2,
        ("demo.fail", ""): 1,
    }
    # Duration: first start to the end, labelled by how the job ended; a job cancelled
    # before it started has none.
    durations = metrics.histograms["duration"]
    assert {key: h.count for key, h in durations.items()} == {
        ("demo.echo", "COMPLETED"): 1,
        ("demo.echo", "CANCELLED"): 1,
        ("demo.fail", "FAILED"): 1,
    }
    assert durations[("demo.echo", "COMPLETED")].total >= 0.06
    assert durations[("demo.echo", "CANCELLED")].total >= 0.03
    attempts = metrics.histograms["attempts"]
    assert attempts[("demo.echo", "COMPLETED")].cumulative()[:2] == [(1, 0), (2, 1)]
    assert attempts[("demo.echo", "COMPLETED")].total == 2
    assert attempts[("demo.echo", "CANCELLED")].total == 1  # one started, one never
    # Cancel latency, by the state cancelled from: immediate for a queued job, the time
    # the worker took to stop for a running one.
    latency = metrics.histograms["cancel_latency"]
    assert latency[("demo.echo", "CREATED")].total == 0
    assert latency[("demo.echo", "RUNNING")].total >= 0.03
    assert latency[("demo.echo", "RUNNING")].count == 1


def test_histogram_buckets_are_cumulative_with_inf_last() -> None:
    histogram = Histogram(SECONDS_BUCKETS, counts=[1] + [0] * (len(SECONDS_BUCKETS) - 1) + [2])

    pairs = histogram.cumulative()

    assert pairs[0] == (SECONDS_BUCKETS[0], 1)
    assert pairs[-2] == (SECONDS_BUCKETS[-1], 1)
    assert pairs[-1] == (float("inf"), 3)
    assert histogram.count == 3


def test_unknown_and_malformed_fields_are_ignored() -> None:
    metrics = JobMetrics.decode(
        {
            "t|a|CREATED": "2",
            "t|too|many|parts": "9",
            "h|nosuch|a||1": "5",
            "h|attempts|a|FAILED|99": "5",
            "h|attempts|a|FAILED|x": "5",
            "h|attempts|a|FAILED|2": "4",
            "other": "1",
        }
    )

    assert metrics.transitions == {("a", "CREATED"): 2}
    assert metrics.histograms["attempts"][("a", "FAILED")].counts == [0, 4] + [0] * (
        len(ATTEMPT_BUCKETS) - 1
    )
    assert "nosuch" not in metrics.histograms


def test_counts_stay_exact_across_processes(store: JobStore) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_submit_and_finish, [(store.keys.prefix, 25)] * 4)

    metrics = snapshot(store)

    assert metrics.transitions[("demo.echo", "CREATED")] == 100
    assert metrics.transitions[("demo.echo", "COMPLETED")] == 100
    assert metrics.histograms["duration"][("demo.echo", "COMPLETED")].count == 100


def _submit_and_finish(prefix: str, jobs: int) -> None:
    settings = load_settings(prefix=prefix)
    store = JobStore(connect_redis(settings), prefix=prefix)
    for _ in range(jobs):
        job = store.create("demo.echo", {}, max_attempts=1)
        store.start(job.id, 1, "w")
        store.transition(job.id, State.COMPLETED, fence="w")
        store.fold_metrics()  # every process folds as it goes: each entry must count once


def test_each_transition_is_folded_once_and_nothing_before_the_fold_counts(
    store: JobStore,
) -> None:
    job = store.create("demo.echo", {}, max_attempts=1)
    assert JobMetrics.decode(store.redis.hgetall(store.keys.metrics)).transitions == {}
    assert store.fold_metrics() == 1
    assert store.fold_metrics() == 0
    store.start(job.id, 1, "w")
    store.transition(job.id, State.COMPLETED, fence="w")
    assert store.fold_metrics(batch=1) == 2  # one entry at a time, until none is left
    metrics = snapshot(store)
    assert metrics.transitions == {
        ("demo.echo", "CREATED"): 1,
        ("demo.echo", "RUNNING"): 1,
        ("demo.echo", "COMPLETED"): 1,
    }
    assert store.redis.smembers(store.keys.job_types) == {"demo.echo"}


def test_a_discarded_submission_is_taken_back_whether_or_not_it_was_folded(
    store: JobStore,
) -> None:
    folded = store.create("demo.echo", {}, max_attempts=1)
    store.fold_metrics()
    unfolded = store.create("demo.echo", {}, max_attempts=1)
    store.discard(folded.id)
    store.discard(unfolded.id)
    assert snapshot(store).transitions[("demo.echo", "CREATED")] == 0
