"""The job document (DESIGN section 5) and its parts, as the API and the hooks see them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

from orchestrator_core.states import State

MAX_BATCH_JOBS = 1000
"""The most jobs one batch submission (``POST /jobs/batch``) creates."""


def format_instant(value: datetime) -> str:
    """``value`` as the documents write instants: ``2026-01-01T00:00:00.000000Z``."""
    # isoformat is C code, strftime is many times slower; every document has several.
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


Timestamp = Annotated[datetime, PlainSerializer(format_instant, return_type=str)]
"""A UTC instant, written ``2026-01-01T00:00:00.000000Z``."""


def from_micros(micros: int) -> datetime:
    """The instant ``micros`` microseconds after the epoch (the store's clock is Redis ``TIME``)."""
    seconds, rest = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HistoryEntry(_Frozen):
    """One persisted transition: the state entered, when, in which attempt, and why."""

    state: State
    at: Timestamp
    attempt: int
    reason: str | None = None


class ErrorInfo(_Frozen):
    """Why an attempt or the job failed."""

    type: str
    message: str
    retryable: bool


class Progress(_Frozen):
    """What a running job last reported through its token."""

    fraction: float | None = None
    message: str | None = None


class Job(_Frozen):
    """A job document: what the API returns and what ``job_transitioned`` receives."""

    id: str
    type: str
    state: State
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    cancel_requested: bool = False
    result: Any = None
    error: ErrorInfo | None = None
    progress: Progress | None = None
    history: tuple[HistoryEntry, ...] = ()
    priority: int = 0
    concurrency_key: str | None = None
    not_before: Timestamp | None = None
    """When the job becomes eligible to start (from ``delay`` or ``run_at``), or None."""
    waiting: str | None = None
    """Why a job in CREATED or RETRYING has not started: ``"time"`` (its ``not_before``
    or a retry's backoff is not over), ``"concurrency"``, ``"rate"``, ``"paused"``;
    None when nothing holds it back."""
    rerun_of: str | None = None
    """The job this one re-runs (``POST /jobs/{id}/rerun``), or None."""
    schedule: str | None = None
    """The cron schedule that made this job, or None."""

    @property
    def terminal(self) -> bool:
        """True once the job is COMPLETED, FAILED or CANCELLED."""
        return self.state.terminal
