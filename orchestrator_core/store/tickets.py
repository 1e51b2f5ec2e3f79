"""What a submission asks the store for: tickets of new jobs, created together or not.

A ticket is one request: a job, or a batch of them. The store script creates a call's
tickets one after the other, each whole or not at all, so many requests share a round
trip while each keeps its own outcome (and its own ``Idempotency-Key``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator_core.models import HistoryEntry, Job, from_micros
from orchestrator_core.sealing import Sealed
from orchestrator_core.states import State
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.records import to_json


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create: its type, payload (validated already) and attempts."""

    job_type: str
    payload: Mapping[str, Any]
    max_attempts: int
    queue: str | None = None
    """The broker queue (already prefixed); None takes the type's own."""
    job_id: str | None = None
    """An id of the caller's choosing, checked to be free; None makes a fresh one."""
    sealed: Sealed | None = None
    """For a type with secret fields, the sealed copy of the payload with their real
    values (``payload`` holds them masked); stored as the hash field ``sealed``."""

    priority: int = 0
    """0..9, the job's own or its type's (DESIGN section 9)."""
    concurrency_key: str | None = None
    """What the type's per-key limits count the job by (a tenant id, say)."""
    not_before_us: int | None = None
    """When it may start (microseconds since the epoch); a job with one waits in the
    store's deferred schedule, and the submitter publishes no message for it."""
    rerun_of: str | None = None
    schedule: str | None = None
    """The cron schedule that made it."""

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, not {attempts!r}")

    def queue_in(self, keys: Keys) -> str:
        """The broker queue the job's messages go to: its own, else its type's name."""
        return self.queue or keys.queue(self.job_type)


@dataclass(frozen=True, slots=True)
class Ticket:
    """The jobs of one request, created together or not at all."""

    jobs: tuple[NewJob, ...]
    idempotency_key: str | None = None
    """With a key, a repeat of the same request gets the first jobs back, and a
    different request under it is refused."""
    ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.jobs:
            raise ValueError("a ticket needs at least one job")
        ids = tuple(str(uuid.uuid4()) if job.job_id is None else job.job_id for job in self.jobs)
        object.__setattr__(self, "ids", ids)


def script_arguments(
    tickets: Sequence[Ticket], keys: Keys, *, outbox_ms: int, idempotency_ms: int
) -> tuple[dict[str, Any], list[str]]:
    """The ``create`` operation's arguments, and the payloads that follow them.

    :raises SerializationError: a payload is not JSON.
    """
    payloads: list[str] = []
    described = []
    for ticket in tickets:
        blobs = [to_json(dict(job.payload), what="payload") for job in ticket.jobs]
        jobs = []
        for job, job_id in zip(ticket.jobs, ticket.ids, strict=True):
            spec: dict[str, Any] = {
                "id": job_id,
                "type": job.job_type,
                "queue": job.queue_in(keys),
                "max_attempts": job.max_attempts,
            }
            if job.job_id is not None:
                spec["check_id"] = True
            if job.sealed is not None:
                spec["sealed"] = job.sealed.text
            if job.priority:
                spec["priority"] = job.priority
            for name, value in (
                ("ckey", job.concurrency_key),
                ("not_before_us", job.not_before_us),
                ("rerun_of", job.rerun_of),
                ("schedule", job.schedule),
            ):
                if value is not None:
                    spec[name] = value
            jobs.append(spec)
        entry: dict[str, Any] = {"jobs": jobs}
        if ticket.idempotency_key is not None:
            entry["idem"] = keys.idempotency(ticket.idempotency_key)
            entry["fingerprint"] = fingerprint(ticket.jobs, blobs)
        described.append(entry)
        payloads.extend(blobs)
    arguments = {"tickets": described, "dispatch_ms": outbox_ms, "idem_ttl_ms": idempotency_ms}
    return arguments, payloads


def new_jobs(ticket: Ticket, blobs: Sequence[str], instants: Sequence[str]) -> tuple[Job, ...]:
    """The documents of a ticket's jobs just created at ``instants`` (microseconds of
    the Redis clock) with the payloads ``blobs``: everything else of a new job is what
    the ticket asked for."""
    jobs = []
    for job, job_id, blob, instant in zip(ticket.jobs, ticket.ids, blobs, instants, strict=True):
        at = from_micros(int(instant))
        # Built from checked values, as decode_job builds documents it read.
        entry = HistoryEntry.model_construct(state=State.CREATED, at=at, attempt=0, reason=None)
        jobs.append(
            Job.model_construct(
                id=job_id,
                type=job.job_type,
                state=State.CREATED,
                payload=json.loads(blob),  # as stored, as a read of the job would have it
                attempts=0,
                max_attempts=job.max_attempts,
                created_at=at,
                updated_at=at,
                started_at=None,
                finished_at=None,
                cancel_requested=False,
                result=None,
                error=None,
                progress=None,
                history=(entry,),
                priority=job.priority,
                concurrency_key=job.concurrency_key,
                not_before=None if job.not_before_us is None else from_micros(job.not_before_us),
                waiting="time" if job.not_before_us is not None else None,
                rerun_of=job.rerun_of,
                schedule=job.schedule,
            )
        )
    return tuple(jobs)


def fingerprint(jobs: Sequence[NewJob], blobs: Sequence[str]) -> str:
    """What tells a repeat of a request from another request under the same key."""
    parts = [
        f"{job.job_type}\n{job.max_attempts}\n{blob}"
        # A delay is counted from each request's arrival: a repeat is the same request.
        + (
            f"\n{job.priority}\n{job.concurrency_key}\n{job.schedule}"
            if job.priority or job.concurrency_key or job.schedule
            else ""
        )
        # The masked payload is the same whatever the secrets; their digest tells them apart.
        + (f"\n{job.sealed.digest}" if job.sealed is not None else "")
        for job, blob in zip(jobs, blobs, strict=True)
    ]
    return hashlib.sha256("\n\n".join(parts).encode()).hexdigest()
