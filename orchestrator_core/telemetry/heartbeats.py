"""Worker heartbeats: what each live worker records in Redis, and how it is read back.

Each worker's main process refreshes a JSON record in one hash (``worker/heartbeat.py``
writes it); the API reads the hash beside the job figures, so it can count and list
the workers without any of them publishing a port.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)

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
