"""The event stream: one entry per persisted transition, in the order they happened.

The store script appends each entry in the same atomic step as the transition, to a
Redis stream rather than pub/sub: a stream keeps entries, so a reader that was away
resumes from the last id it saw (``Last-Event-ID``) instead of missing what happened
meanwhile, and many readers share one entry without the writer knowing about them.
The stream is capped at about ``events_max_length`` entries; a job's own history is
kept whole in its document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from orchestrator_core.connection import redis_errors
from orchestrator_core.exceptions import InvalidQueryError
from orchestrator_core.keys import Keys
from orchestrator_core.models import Job, from_micros
from orchestrator_core.states import State

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


@dataclass(frozen=True, slots=True)
class Event:
    """One transition of one job."""

    id: str
    """The stream entry id (``<ms>-<n>``); for a replayed history entry, its ``seq``."""
    job_id: str
    type: str
    state: State
    previous: State | None
    """The state left; None for the first event (``CREATED``)."""
    at: datetime
    attempt: int
    seq: int
    """1-based position of this transition in the job's history."""
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The event as the API sends it."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "type": self.type,
            "state": self.state.value,
            "from": self.previous.value if self.previous else None,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "attempt": self.attempt,
            "seq": self.seq,
            "reason": self.reason,
        }

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Event:
        previous = fields.get("from")
        return cls(
            id=entry_id,
            job_id=fields["job_id"],
            type=fields["type"],
            state=State(fields["state"]),
            previous=State(previous) if previous else None,
            at=from_micros(int(fields["at"])),
            attempt=int(fields["attempt"]),
            seq=int(fields["seq"]),
            reason=fields.get("reason"),
        )


def history_events(job: Job, *, after: int = 0) -> list[Event]:
    """The job's history as events (id = ``seq``), those after position ``after``."""
    events = []
    for position, entry in enumerate(job.history, start=1):
        if position <= after:
            continue
        previous = job.history[position - 2].state if position > 1 else None
        events.append(
            Event(
                id=str(position),
                job_id=job.id,
                type=job.type,
                state=entry.state,
                previous=previous,
                at=entry.at,
                attempt=entry.attempt,
                seq=position,
                reason=entry.reason,
            )
        )
    return events


def stream_id(value: str) -> str:
    """``value`` checked as a stream entry id, for a client's ``Last-Event-ID``.

    :raises InvalidQueryError: for anything else.
    """
    if not _STREAM_ID.fullmatch(value):
        raise InvalidQueryError(f"not an event id: {value[:64]!r} (expected <ms>-<n>)")
    return value


class EventLog:
    """Reads the event stream of one prefix (the store script is its only writer)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def last_id(self) -> str:
        """The id of the newest entry, or ``0-0`` for an empty stream: read after it for
        what happens from now on."""
        with redis_errors("reading the event stream"):
            newest = self.redis.xrevrange(self.keys.events, count=1)
        return str(newest[0][0]) if newest else "0-0"

    def read(self, after: str, *, count: int = 500, block_ms: int | None = None) -> list[Event]:
        """Up to ``count`` entries after id ``after``, oldest first; with ``block_ms``,
        wait that long for one when there are none yet.

        Entries trimmed away by the length cap are simply not there: reading after an id
        older than the oldest kept entry starts from the oldest kept.
        """
        with redis_errors("reading the event stream"):
            reply = self.redis.xread({self.keys.events: after}, count=count, block=block_ms)
        return [Event.from_entry(entry_id, fields) for entry_id, fields in _entries(reply)]


def _entries(reply: Any) -> Sequence[tuple[str, dict[str, str]]]:
    # XREAD answers [[stream, [[id, fields], ...]]], or None/[] when nothing came in time.
    if not reply:
        return []
    return [(str(entry_id), fields) for entry_id, fields in reply[0][1]]
