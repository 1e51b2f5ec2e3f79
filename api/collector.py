"""Prometheus collectors that read the deployment's figures at scrape time.

The job figures are not counted in this process: they are folded in Redis from the
event stream the store script appends to with each transition, whichever API or worker
process made it (``telemetry/metrics.py``), and the workers keep their heartbeats there
too. A scrape of any one API
process therefore reports the whole deployment, each job counted once, and no worker
needs to be scraped. See ``worker/heartbeat.py`` for why workers report through Redis
rather than on ports of their own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator_core.exceptions import StoreUnavailableError
from orchestrator_core.plugins import LoadReport
from orchestrator_core.states import State
from orchestrator_core.store import FlowUsage, JobStore
from orchestrator_core.store.connection import redis_errors
from orchestrator_core.telemetry.heartbeats import WorkerBeat, live_workers
from orchestrator_core.telemetry.metrics import HISTOGRAMS, Histogram, JobMetrics

logger = logging.getLogger(__name__)


class StoreCollector(Collector):
    """The job counters, histograms and current counts, and the live workers, all read
    from Redis at each scrape (one pipeline for the hashes, one for the index sizes).

    When Redis does not answer, the scrape still succeeds with ``orchestrator_store_up
    0`` and no job figures: Prometheus then records the outage as a value to alert on,
    and keeps this process's own figures, where a failed scrape would lose both.

    :param job_types: the types to report current counts for even before any job of
        theirs exists; types found in the counters are reported too.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        # Names only: registering must not read Redis.
        return [
            _store_up(),
            *_job_families(),
            *_flow_families(),
            *_worker_families(),
        ]

    def collect(self) -> Iterable[Metric]:
        try:
            metrics, current, workers = self._read()
            flow = self.store.flow_usage()
        except StoreUnavailableError as exc:
            logger.warning("metrics scrape without job figures: %s", exc)
            return [_store_up(0)]
        return [
            _store_up(1),
            *_job_families(metrics, current),
            *_flow_families(flow),
            *_worker_families(workers),
        ]

    def _read(self) -> tuple[JobMetrics, dict[tuple[str, State], int], list[WorkerBeat]]:
        store = self.store
        # Folded first, so the figures count every transition persisted before the scrape.
        store.fold_metrics()
        counts = store.counts()
        with redis_errors("reading the metrics"):
            pipe = store.redis.pipeline(transaction=False)
            pipe.hgetall(store.keys.metrics)
            pipe.hgetall(store.keys.workers)
            pipe.time()
            raw_metrics, raw_workers, (seconds, micros) = pipe.execute()
        workers = live_workers(raw_workers, seconds + micros / 1_000_000)
        return JobMetrics.decode(raw_metrics), counts, workers


class PluginCollector(Collector):
    """This API process's plugin load failures (each worker's are in its heartbeat)."""

    def __init__(self, report: LoadReport) -> None:
        self.report = report

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "orchestrator_plugin_load_failures",
            "Plugins this process quarantined at start-up (see GET /plugins).",
            labels=["process"],
        )
        family.add_metric(["api"], len(self.report.failed))
        return [family]


def _store_up(value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "orchestrator_store_up",
        "1 when Redis answered this scrape, 0 when the job figures could not be read.",
        value=value,
    )


def _job_families(
    metrics: JobMetrics | None = None, current: dict[tuple[str, State], int] | None = None
) -> Iterator[Metric]:
    submitted = CounterMetricFamily(
        "orchestrator_jobs_submitted", "Jobs submitted, by type.", labels=["type"]
    )
    transitions = CounterMetricFamily(
        "orchestrator_job_transitions",
        "Transitions into each state, by type (CREATED counts submissions).",
        labels=["type", "state"],
    )
    jobs = GaugeMetricFamily(
        "orchestrator_jobs", "Jobs now in each state, by type.", labels=["type", "state"]
    )
    if metrics is not None:
        for (job_type, state), count in sorted(metrics.transitions.items()):
            transitions.add_metric([job_type, state], count)
            if state == State.CREATED:
                submitted.add_metric([job_type], count)
    for (job_type, state), count in (current or {}).items():
        jobs.add_metric([job_type, state.value], count)
    yield submitted
    yield transitions
    yield jobs
    for key, spec in HISTOGRAMS.items():
        label = spec.label
        family = HistogramMetricFamily(
            spec.exported, spec.documentation, labels=["type"] if label is None else ["type", label]
        )
        series = metrics.histograms.get(key, {}) if metrics is not None else {}
        for (job_type, second), histogram in sorted(series.items()):
            family.add_metric(
                [job_type] if label is None else [job_type, second],
                _buckets(histogram),
                histogram.total,
            )
        yield family


def _flow_families(flow: FlowUsage | None = None) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "orchestrator_jobs_waiting",
        "Jobs in CREATED or RETRYING held back, by type and reason (time, concurrency, "
        "rate, paused).",
        labels=["type", "reason"],
    )
    in_use = GaugeMetricFamily(
        "orchestrator_concurrency_in_use",
        "Running jobs holding a slot of their type's concurrency limits, by type.",
        labels=["type"],
    )
    limit = GaugeMetricFamily(
        "orchestrator_concurrency_limit",
        "The effective deployment-wide concurrency limit of each limited type.",
        labels=["type"],
    )
    paused = GaugeMetricFamily(
        "orchestrator_job_type_paused",
        "1 for each job type an operator paused.",
        labels=["type"],
    )
    if flow is not None:
        for (job_type, reason), count in sorted(flow.waiting.items()):
            waiting.add_metric([job_type, reason], count)
        for job_type, count in sorted(flow.running.items()):
            in_use.add_metric([job_type], count)
        for job_type, value in sorted(flow.concurrency.items()):
            limit.add_metric([job_type], value)
        for job_type, override in sorted(flow.overrides.items()):
            if override.get("paused"):
                paused.add_metric([job_type], 1)
    yield waiting
    yield in_use
    yield limit
    yield paused


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [
        ("+Inf" if math.isinf(bound) else repr(float(bound)), count)
        for bound, count in histogram.cumulative()
    ]


def _worker_families(workers: list[WorkerBeat] | None = None) -> Iterator[Metric]:
    count = GaugeMetricFamily(
        "orchestrator_workers",
        "Workers whose heartbeat is fresh (within three of their intervals).",
        value=None if workers is None else len(workers),
    )
    failures = GaugeMetricFamily(
        "orchestrator_worker_plugin_load_failures",
        "Plugins each live worker quarantined at start-up.",
        labels=["worker"],
    )
    concurrency = GaugeMetricFamily(
        "orchestrator_worker_concurrency",
        "Jobs each live worker runs at once.",
        labels=["worker"],
    )
    for beat in workers or ():
        failures.add_metric([beat.worker], beat.plugin_load_failures)
        concurrency.add_metric([beat.worker], beat.concurrency)
    yield count
    yield failures
    yield concurrency
