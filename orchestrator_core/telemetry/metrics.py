"""The job metrics the store script keeps in Redis: what each one is, and their reading.

Each transition is an entry of the event stream; the script's ``fold``
(``store/lua/metrics.lua``) adds the entries it has not counted yet to the counters and
observes the histograms they end (queue wait, duration, attempts, cancel latency), in
one hash per prefix, moving its cursor in the same step. Every sweep and every scrape
folds first, whichever process runs it, so the figures are the deployment's, each
transition counted exactly once. The API's collector (``api/collector.py``) exports
every histogram of :data:`HISTOGRAMS` as it finds it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

SECONDS_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
)  # fmt: skip
"""Upper bounds of the histograms in seconds (queue wait, duration, cancel latency)."""

ATTEMPT_BUCKETS: tuple[float, ...] = (1, 2, 3, 5, 10, 20, 50, 100)
"""Upper bounds of the attempts-per-finished-job histogram."""


@dataclass(frozen=True)
class HistogramSpec:
    """One histogram the store script observes, and how the API exports it."""

    name: str
    """What the script calls it: ``observe('<name>', ...)`` in ``store/lua/metrics.lua``."""
    exported: str
    """The Prometheus family name."""
    documentation: str
    label: str | None
    """The second label after ``type``, or None for none."""
    bounds: tuple[float, ...]


HISTOGRAMS: Mapping[str, HistogramSpec] = {
    spec.name: spec
    for spec in (
        HistogramSpec(
            "queue_wait",
            "orchestrator_job_queue_wait_seconds",
            "Time from submission to the first start of a job.",
            None,
            SECONDS_BUCKETS,
        ),
        HistogramSpec(
            "duration",
            "orchestrator_job_duration_seconds",
            "Time from a job's first start to its end, by the state it ended in.",
            "state",
            SECONDS_BUCKETS,
        ),
        HistogramSpec(
            "attempts",
            "orchestrator_job_attempts",
            "Attempts a job had started when it ended, by the state it ended in.",
            "state",
            ATTEMPT_BUCKETS,
        ),
        HistogramSpec(
            "cancel_latency",
            "orchestrator_job_cancel_latency_seconds",
            "Time from a cancel request to the job reading CANCELLED, by the state cancelled from.",
            "from_state",
            SECONDS_BUCKETS,
        ),
    )
}
"""Every histogram the store script observes, by its name in the script."""


@dataclass
class Histogram:
    """One histogram series: per-bucket counts (not cumulative; the last is +Inf) and sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` pairs ending with ``inf``."""
        running, pairs = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


@dataclass
class JobMetrics:
    """What the metrics hash holds, decoded."""

    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    """Transitions into each state, by ``(job type, state)``; ``CREATED`` counts submissions."""
    histograms: dict[str, dict[tuple[str, str], Histogram]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    """By histogram name, then ``(job type, label)``: the label is the finishing state
    for ``duration`` and ``attempts``, the state cancelled from for ``cancel_latency``,
    empty for ``queue_wait``."""

    @classmethod
    def decode(cls, raw: Mapping[str, str]) -> JobMetrics:
        """Decode ``HGETALL`` of the metrics hash; fields it does not know are ignored."""
        metrics = cls()
        for name, value in raw.items():
            parts = name.split("|")
            if parts[0] == "t" and len(parts) == 3:
                metrics.transitions[(parts[1], parts[2])] = int(value)
            elif parts[0] == "h" and len(parts) == 5 and parts[1] in HISTOGRAMS:
                histogram = metrics._series(parts[1], parts[2], parts[3])
                if parts[4] == "sum":
                    histogram.total = float(value)
                elif parts[4].isdigit() and 1 <= int(parts[4]) <= len(histogram.counts):
                    histogram.counts[int(parts[4]) - 1] = int(value)
        return metrics

    def _series(self, name: str, job_type: str, label: str) -> Histogram:
        series = self.histograms[name]
        key = (job_type, label)
        if key not in series:
            series[key] = Histogram(HISTOGRAMS[name].bounds)
        return series[key]
