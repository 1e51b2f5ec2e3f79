"""The job metrics the store script keeps in Redis, and their reading.

The script that persists a transition also counts it and observes the histograms it
ends (queue wait, duration, attempts, cancel latency), in one hash per prefix. Every
API and worker process writes through that script, so the figures are the
deployment's, exactly once each, whichever process exports them.

Workers add what only they know (that they are alive, what they serve, their plugin
load failures) as heartbeats in another hash, read by the API beside the job figures.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)

SECONDS_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
)  # fmt: skip
"""Upper bounds of the histograms in seconds (queue wait, duration, cancel latency)."""

ATTEMPT_BUCKETS: tuple[float, ...] = (1, 2, 3, 5, 10, 20, 50, 100)
"""Upper bounds of the attempts-per-finished-job histogram."""

HISTOGRAM_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "queue_wait": SECONDS_BUCKETS,
    "duration": SECONDS_BUCKETS,
    "cancel_latency": SECONDS_BUCKETS,
    "attempts": ATTEMPT_BUCKETS,
}
"""Each histogram the store script observes, by name, with its bounds."""


def lua_buckets() -> str:
    """The bounds as the Lua table the store script is built with."""

    def table(bounds: tuple[float, ...]) -> str:
        return "{" + ", ".join(repr(float(b)) for b in bounds) + "}"

    return f"{{seconds = {table(SECONDS_BUCKETS)}, attempts = {table(ATTEMPT_BUCKETS)}}}"


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
            elif parts[0] == "h" and len(parts) == 5 and parts[1] in HISTOGRAM_BUCKETS:
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
            series[key] = Histogram(HISTOGRAM_BUCKETS[name])
        return series[key]


HEARTBEAT_SECONDS = 5.0
"""How often each worker refreshes its record in the workers hash."""

STALE_HEARTBEATS = 3
"""A worker silent for this many of its own heartbeat intervals is not counted any more,
and the next heartbeat of any worker deletes its record."""


@dataclass(frozen=True)
class WorkerBeat:
    """One worker's heartbeat: a JSON record in the workers hash, under its node name.

    The worker sends every field but the two times; the heartbeat script stamps those
    with Redis ``TIME``, so every process judges freshness by one clock.
    """

    worker: str
    """The node name, also the record's field in the hash."""
    hostname: str
    pid: int
    concurrency: int
    interval: float
    """Seconds between this worker's heartbeats."""
    plugin_load_failures: int
    job_types: tuple[str, ...]
    started_at: float = 0.0
    """Redis time of the worker's first heartbeat, in seconds."""
    last_seen: float = 0.0
    """Redis time of its latest heartbeat, in seconds."""

    def encode(self) -> str:
        """The record as stored (the node name is the field, not part of the value)."""
        record = asdict(self)
        del record["worker"]
        return json.dumps(record)

    @classmethod
    def decode(cls, worker: str, raw: str) -> WorkerBeat:
        """Read the record stored under ``worker``.

        :raises ValueError: the record is not one this version wrote.
        """
        try:
            data = json.loads(raw)
            return cls(
                worker=worker,
                hostname=str(data["hostname"]),
                pid=int(data["pid"]),
                concurrency=int(data["concurrency"]),
                interval=float(data["interval"]),
                plugin_load_failures=int(data["plugin_load_failures"]),
                # Redis's cjson writes an empty array back as {}: both mean none.
                job_types=tuple(str(name) for name in data["job_types"] or ()),
                started_at=float(data["started_at"]),
                last_seen=float(data["last_seen"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed heartbeat of worker {worker!r}: {exc}") from None

    def fresh(self, now: float) -> bool:
        """Whether the worker beat within :data:`STALE_HEARTBEATS` intervals of ``now``."""
        return now - self.last_seen <= STALE_HEARTBEATS * self.interval


def live_workers(raw: Mapping[str, str], now: float) -> list[WorkerBeat]:
    """The fresh heartbeats of ``HGETALL`` of the workers hash at Redis time ``now``, by
    name; a record this version cannot read is logged and left out."""
    beats = []
    for worker, record in sorted(raw.items()):
        try:
            beat = WorkerBeat.decode(worker, record)
        except ValueError as exc:
            logger.warning("%s", exc)
            continue
        if beat.fresh(now):
            beats.append(beat)
    return beats
