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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from pydantic import ValidationError

from orchestrator_core.exceptions import InvalidQueryError
from orchestrator_core.job_type import MAX_NAME_LENGTH, NAME_PATTERN
from orchestrator_core.models import Job, Progress, format_instant, from_micros
from orchestrator_core.states import State
from orchestrator_core.store.connection import redis_errors
from orchestrator_core.store.keys import Keys

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
            "at": format_instant(self.at),
            "attempt": self.attempt,
            "seq": self.seq,
            "reason": self.reason,
        }

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Event:
        """The event of one stream entry. Its instant is the entry id's (milliseconds of
        the Redis clock): the store script dates each move by the entry it appends."""
        previous = fields.get("from")
        at = int(fields["at"]) if "at" in fields else stream_order(entry_id)[0] * 1000
        return cls(
            id=entry_id,
            job_id=fields["job_id"],
            type=fields["type"],
            state=State(fields["state"]),
            previous=State(previous) if previous else None,
            at=from_micros(at),
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


def stream_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a key that sorts as the stream does (``"9-0" < "10-0"``)."""
    millis, _, number = entry_id.partition("-")
    return int(millis), int(number or 0)


def history_position(value: str) -> int:
    """``value`` checked as an event id of one job's events, its position in the history,
    for a client's ``Last-Event-ID``.

    :raises InvalidQueryError: for anything else.
    """
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise InvalidQueryError(
            f"not an event id of this job: {value[:64]!r} (expected its position, 0 or more)"
        )
    return int(value)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants: of one state and/or one job type (None: any)."""

    state: State | None = None
    job_type: str | None = None

    @classmethod
    def parse(cls, *, state: str | None = None, job_type: str | None = None) -> EventFilter:
        """The filter for a query's ``state`` and ``type``, checked as ``GET /jobs`` checks them.

        :raises InvalidQueryError: for an unknown state (naming the valid ones) or a type
            name that no job type could have.
        """
        if job_type is not None and not (
            len(job_type) <= MAX_NAME_LENGTH and NAME_PATTERN.fullmatch(job_type)
        ):
            raise InvalidQueryError(
                f"malformed job type {job_type!r}; names look like 'acme.count'"
            )
        return cls(state=State.parse(state) if state is not None else None, job_type=job_type)

    def matches(self, event: Event) -> bool:
        return (self.state is None or event.state is self.state) and (
            self.job_type is None or event.type == self.job_type
        )


@dataclass(frozen=True, slots=True)
class RunningStatus:
    """What changes in a job between two transitions: its progress and a cancel request."""

    job_id: str
    progress: Progress | None
    cancel_requested: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "progress": self.progress.model_dump(mode="json") if self.progress else None,
            "cancel_requested": self.cancel_requested,
        }


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

    def trimmed_after(self, after: str) -> str | None:
        """The oldest kept entry's id when the length cap has trimmed entries that may have
        come after ``after`` (a reader resuming there may have missed some), else None."""
        with redis_errors("reading the event stream"):
            try:
                info = self.redis.xinfo_stream(self.keys.events)
            except redis.ResponseError:
                return None  # no stream yet: nothing was ever trimmed
        first = info.get("first-entry")
        if not first or int(info.get("entries-added", 0)) <= int(info.get("length", 0)):
            return None
        # Trimming takes the oldest entries: all of them came before the first kept one.
        first_id = str(first[0])
        return first_id if stream_order(after) < stream_order(first_id) else None

    def running(self, job_ids: Iterable[str]) -> list[RunningStatus]:
        """The progress and cancel request of each job of ``job_ids`` that still exists,
        read in one round trip."""
        ids = list(job_ids)
        if not ids:
            return []
        with redis_errors("reading job progress"):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "state", "progress", "cancel_requested")
            replies = pipe.execute()
        statuses = []
        for job_id, (state, progress, cancel) in zip(ids, replies, strict=True):
            if state is None:
                continue
            try:
                decoded = Progress.model_validate_json(progress) if progress else None
            except ValidationError:
                decoded = None  # the job's own reads report a malformed document
            statuses.append(RunningStatus(job_id, decoded, cancel == "1"))
        return statuses


def _entries(reply: Any) -> Sequence[tuple[str, dict[str, str]]]:
    # XREAD answers [[stream, [[id, fields], ...]]], or None/[] when nothing came in time.
    if not reply:
        return []
    return [(str(entry_id), fields) for entry_id, fields in reply[0][1]]
