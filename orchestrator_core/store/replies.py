"""What the store's operations answer, and the refusals the script replies with.

The script answers ``{"ok", ...}`` or ``{"err", code, ...}``; :func:`refusal` turns each
code into the exception of the one tree that says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator_core.exceptions import (
    AttemptsExhaustedError,
    CorruptJobError,
    IdempotencyConflictError,
    IllegalTransitionError,
    JobExistsError,
    JobNotFoundError,
    LeaseActiveError,
    OrchestratorError,
    StaleLeaseError,
)
from orchestrator_core.models import Job
from orchestrator_core.states import State


class CancelOutcome(StrEnum):
    """What a cancel request did."""

    CANCELLED = "cancelled"
    """The job was waiting (CREATED or RETRYING) and is now CANCELLED."""
    REQUESTED = "requested"
    """The job is RUNNING: its flag is set and the worker was told."""
    ALREADY_CANCELLED = "already_cancelled"
    FINISHED = "finished"
    """The job is COMPLETED or FAILED; nothing changed."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    outcome: CancelOutcome
    job: Job


@dataclass(frozen=True, slots=True)
class StartResult:
    """What a worker's message for one attempt led to."""

    started: bool
    """True when this worker now holds the job as a new RUNNING attempt."""
    reason: str
    """Why the message was dropped (``finished``, ``duplicate``, ``stale message``,
    ``attempts exhausted``); empty when started."""
    job: Job
    sealed: str | None = None
    """The sealed copy of the payload of a started job whose type has secret fields."""


@dataclass(frozen=True, slots=True)
class Created:
    """A job from :meth:`JobStore.create_once`, and whether this call made it."""

    job: Job
    created: bool


@dataclass(frozen=True, slots=True)
class Submitted:
    """A ticket's jobs, in its order, and whether this call made them (False: a repeat of
    an idempotent request, which gets the first request's jobs)."""

    jobs: tuple[Job, ...]
    created: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A job the sweep must publish: its queue and the attempt the message is for."""

    job_id: str
    queue: str
    attempt: int
    priority: int = 0
    """The job's priority, which its message carries (0..9)."""


@dataclass(frozen=True, slots=True)
class Due:
    """What one claim gave the sweep to publish, and when the next job falls due."""

    claims: tuple[Claim, ...]
    due_in: float | None
    """Seconds until the next retry or deferred job falls due; None when none waits."""


@dataclass(frozen=True, slots=True)
class FlowUsage:
    """The flow control's state (see ``store/lua/flow.lua``)."""

    overrides: dict[str, dict[str, Any]]
    """Per job type, the operator's override of its limits."""
    waiting: dict[tuple[str, str], int]
    """Jobs waiting, by (type, reason): time, rate, concurrency, paused."""
    running: dict[str, int]
    """Per type whose concurrency limits are counted, the running jobs holding its slots."""
    concurrency: dict[str, int]
    """Per type with a deployment-wide concurrency limit, its effective value."""


@dataclass(frozen=True, slots=True)
class Expired:
    """What one step of :meth:`JobStore.delete_expired` did."""

    deleted: int
    more: bool
    """The step took as many entries as it may: more may be due at once."""


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """The renewed lease of a running attempt."""

    expires_ms: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, newest first; ``next_cursor`` is None on the last page."""

    items: tuple[Job, ...]
    next_cursor: str | None


def refusal(
    job_id: str, detail: list[Any], target: State | None, *, presented: str | None
) -> OrchestratorError:
    """The exception for the script's ``{"err", code, ...}`` reply ``detail``.

    :param target: the state the call asked for, named in an illegal move's message.
    :param presented: the lease the caller presented, named in a stale lease's.
    """
    code = detail[0]
    requested = target.value if target else "?"
    if code == "not_found":
        return JobNotFoundError(job_id)
    if code == "exists":
        return JobExistsError(detail[1] if len(detail) > 1 else job_id)
    if code == "idempotency_conflict":
        return IdempotencyConflictError(job_id=detail[1])
    if code == "illegal":
        return IllegalTransitionError(
            job_id, current=detail[1], requested=requested, detail=detail[2]
        )
    if code == "stale":
        state = str(detail[2]) if len(detail) > 2 and detail[2] else None
        return StaleLeaseError(job_id, owner=presented, holder=detail[1] or None, state=state)
    if code == "lease_active":
        return LeaseActiveError(job_id, holder=detail[1] or None, remaining_ms=int(detail[2]))
    if code == "exhausted":
        return AttemptsExhaustedError(job_id, attempts=detail[1], max_attempts=detail[2])
    if code == "corrupt":
        return CorruptJobError(f"stored job {job_id} is malformed: {detail[1]}", job_id=job_id)
    return OrchestratorError(f"job store refused {job_id}: {detail!r}")
