"""The Redis job store: the one writer of job state.

Every write is one call of the store script (``script.py``; EVALSHA, reloaded by the
client on NOSCRIPT), which holds the transition table of
:data:`~orchestrator_core.states.TRANSITIONS`, checks the fencing lease before any
write, appends history and keeps the listing indexes right. The callers' beliefs
about a job's state never matter: Redis refuses an illegal move.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis

from orchestrator_core.exceptions import (
    CorruptJobError,
    IllegalTransitionError,
    InvalidQueryError,
    JobNotFoundError,
    OrchestratorError,
    StoreUnavailableError,
)
from orchestrator_core.flow import Limits, script_form
from orchestrator_core.job_type import MAX_NAME_LENGTH, NAME_PATTERN
from orchestrator_core.models import ErrorInfo, Job, Progress
from orchestrator_core.settings import Settings
from orchestrator_core.states import State
from orchestrator_core.store.connection import connect_redis, redis_errors
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.records import decode_job, to_json
from orchestrator_core.store.replies import (
    CancelOutcome,
    CancelResult,
    Claim,
    Created,
    Due,
    Expired,
    FlowUsage,
    LeaseStatus,
    Page,
    StartResult,
    Submitted,
    refusal,
)
from orchestrator_core.store.script import StoreScript
from orchestrator_core.store.tickets import NewJob, Ticket, new_jobs
from orchestrator_core.store.tickets import script_arguments as tickets_arguments

if TYPE_CHECKING:
    from orchestrator_core.plugins import Plugins

logger = logging.getLogger(__name__)

Observer = Callable[[Job, State, State], None]
"""Called with ``(job, old_state, new_state)`` after each persisted transition."""

MAX_PAGE = 500


def canonical_id(job_id: str) -> str:
    """The canonical form of a job id.

    :raises JobNotFoundError: for anything that is not a UUID (no such job can exist).
    """
    try:
        return str(uuid.UUID(job_id))
    except (ValueError, TypeError, AttributeError):
        raise JobNotFoundError(str(job_id)) from None


class JobStore:
    """Create, read, list and move jobs; all state lives in Redis.

    :param client: a client made by :func:`connect_redis` (``decode_responses=True``).
    :param observer: told of every transition this store persists (the plugins'
        ``job_transitioned`` hook); it runs after the write and cannot undo it.
    :param job_types: the installed job types (see :meth:`list_jobs`).
    :param retention_seconds: how long a job that finishes is kept before the sweep
        deletes it (:meth:`delete_expired`); 0 keeps jobs for good.
    :param retention_by_type: the job types whose own ``retention`` overrides it.
    :param limits_by_type: the installed job types' own flow control (``JobType.limits``),
        which each start is checked against, with the operators' overrides over it.
    :param wait_replicas: with more than 0, each write returns once that many replicas
        have it (``WAIT``), or fails past ``wait_timeout`` seconds.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        lease_seconds: float = 30.0,
        outbox_seconds: float = 10.0,
        idempotency_seconds: float = 86400.0,
        events_max_length: int = 100_000,
        observer: Observer | None = None,
        job_types: Iterable[str] = (),
        retention_seconds: float = 7 * 24 * 3600.0,
        retention_by_type: Mapping[str, float] | None = None,
        limits_by_type: Mapping[str, Limits] | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self._job_types = frozenset(job_types)
        """Types a listing by state looks in besides those the metrics fold has seen:
        the installed ones, and every type this store created."""
        self.lease_ms = _millis(lease_seconds)
        self.outbox_ms = _millis(outbox_seconds)
        self.idempotency_ms = _millis(idempotency_seconds)
        self.events_max_length = events_max_length
        self._observer = observer
        retention_ms = _millis(retention_seconds)
        by_type = {name: _millis(keep) for name, keep in (retention_by_type or {}).items()}
        self._retains = retention_ms > 0 or any(keep > 0 for keep in by_type.values())
        self._limits = {
            name: used
            for name, limits in (limits_by_type or {}).items()
            if len(used := limits.script_arguments()) > 1  # more than a priority
        }
        """Per limited type, what the start step is told of its own limits."""
        self._walked = False
        """Set once the walk of :meth:`adopt_finished` is known to be over."""
        self._call = StoreScript(
            client,
            self.keys,
            events_max_length=events_max_length,
            retention_ms=retention_ms,
            retention_by_type={
                name: keep for name, keep in by_type.items() if keep != retention_ms
            },
            replicas=wait_replicas,
            replica_timeout=wait_timeout,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, plugins: Plugins | None = None) -> JobStore:
        """The store of ``settings``; with ``plugins``, their ``job_transitioned`` hook is
        told of every transition it persists, as in every process that moves jobs."""
        observer = plugins.notify_transitioned if plugins is not None and plugins.observes else None
        return cls(
            connect_redis(settings),
            prefix=settings.prefix,
            lease_seconds=settings.lease_seconds,
            outbox_seconds=settings.outbox_seconds,
            idempotency_seconds=settings.idempotency_seconds,
            events_max_length=settings.events_max_length,
            observer=observer,
            job_types=plugins.job_types if plugins is not None else (),
            retention_seconds=settings.retention_seconds,
            retention_by_type=_retention_by_type(plugins),
            limits_by_type=(
                {name: r.job_type.limits for name, r in plugins.job_types.items()}
                if plugins is not None
                else None
            ),
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout=settings.redis_wait_timeout_seconds,
        )

    # --- reading ------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job's document.

        :raises JobNotFoundError: unknown (or non-UUID) id.
        :raises CorruptJobError: the stored document does not decode.
        """
        job_id = canonical_id(job_id)
        return self._job(job_id, self._call("get", job_id, "reading a job"))

    def list_jobs(
        self,
        *,
        state: State | str | None = None,
        job_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Jobs newest first, optionally filtered by state and/or type, a page at a time.

        The cursor is the creation sequence of the last item returned; jobs created
        while a client pages never shift later pages, so nothing is skipped or
        repeated. A document that does not decode is logged and left out. A listing of
        any type looks in the installed types, those this store created and those the
        metrics fold has seen (every type of a job older than a sweep interval).

        :raises InvalidQueryError: bad state or type name, limit outside 1..500, or bad cursor.
        """
        if isinstance(state, str):
            state = State.parse(state)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidQueryError(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}")
        if job_type is not None and not (
            len(job_type) <= MAX_NAME_LENGTH and NAME_PATTERN.fullmatch(job_type)
        ):
            # No type can have such a name, and it must not reach into other keys' names.
            raise InvalidQueryError(
                f"malformed job type {job_type!r}; names look like 'acme.count'"
            )
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 20):
            raise InvalidQueryError(f"malformed cursor {cursor!r}; pass back a next_cursor value")
        args = {
            "state": state.value if state is not None else None,
            "type": job_type,
            "types": sorted(self._job_types) if job_type is None else None,
            "limit": limit,
            "cursor": cursor,
        }
        reply = self._call("list", "", "listing jobs", args)
        next_cursor, raw_items = reply[1], reply[2]
        items = []
        for item_id, flat in raw_items:
            if not flat:
                continue  # deleted between the index read and now: not a job any more
            try:
                items.append(decode_job(item_id, flat))
            except CorruptJobError:
                logger.exception("leaving malformed job %s out of a listing", item_id)
        return Page(items=tuple(items), next_cursor=next_cursor or None)

    # --- writing ------------------------------------------------------------------

    def create(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        max_attempts: int,
        queue: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Store a new CREATED job, index it, and put it in the outbox.

        The outbox entry falls due after ``outbox_seconds``: unless :meth:`dispatched`
        confirms the first message before, the sweep publishes it then, so a job whose
        publisher died is never left without a message.

        :param queue: the broker queue (already prefixed); defaults to the type's own.
        :raises JobExistsError: ``job_id`` is taken.
        :raises SerializationError: the payload is not JSON.
        """
        if job_id is not None:
            job_id = canonical_id(job_id)
        job = NewJob(job_type, payload, max_attempts, queue=queue, job_id=job_id)
        return _only(self.submit([Ticket((job,))])).jobs[0]

    def create_once(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        max_attempts: int,
        idempotency_key: str,
        queue: str | None = None,
    ) -> Created:
        """Like :meth:`create`, but at most one job per ``idempotency_key``.

        The key is kept for ``idempotency_seconds``. A repeat with the same type,
        payload and attempts returns the first job (``created`` is False), however
        many requests race; a repeat with anything else is refused.

        :raises IdempotencyConflictError: the key names a job made from another request.
        """
        job = NewJob(job_type, payload, max_attempts, queue=queue)
        submitted = _only(self.submit([Ticket((job,), idempotency_key)]))
        return Created(submitted.jobs[0], submitted.created)

    def submit(self, tickets: Sequence[Ticket]) -> list[Submitted | OrchestratorError]:
        """Create every ticket's jobs, each ticket whole or not at all, in one round trip.

        :return: per ticket, its jobs (made now, or by the first request under its
            idempotency key), or why it was refused (``JobExistsError``,
            ``IdempotencyConflictError``).
        :raises StoreUnavailableError: Redis did not answer: any ticket may or may not
            have been created (the sweep publishes what was).
        :raises SerializationError: a payload is not JSON (nothing was sent).
        """
        args, payloads = tickets_arguments(
            tickets, self.keys, outbox_ms=self.outbox_ms, idempotency_ms=self.idempotency_ms
        )
        new_types = {job.job_type for ticket in tickets for job in ticket.jobs} - self._job_types
        if new_types:
            # Replaced whole, never changed in place: other threads read it unlocked.
            self._job_types = self._job_types | new_types
        reply = self._call("create", "", "creating jobs", args, extra=payloads)
        results: list[Submitted | OrchestratorError] = []
        first_blob = 0
        for ticket, (outcome, *detail) in zip(tickets, reply[1], strict=True):
            blobs = payloads[first_blob : first_blob + len(ticket.jobs)]
            first_blob += len(ticket.jobs)
            if outcome == "err":
                job_id = str(detail[1]) if len(detail) > 1 else ""
                results.append(refusal(job_id, detail, None, presented=None))
            elif outcome == "created":
                results.append(Submitted(new_jobs(ticket, blobs, detail[0]), created=True))
            else:
                jobs = tuple(decode_job(_id_of(flat), flat) for flat in detail[0])
                results.append(Submitted(jobs, created=False))
        return results

    def discard(self, job_id: str) -> None:
        """Delete a job that was never started, as if it had never been submitted.

        For a submission whose message could not be queued: the client is told it
        failed, so the job must not run or be listed later.

        :raises IllegalTransitionError: the job has left CREATED (or started), or is gone.
        """
        job_id = canonical_id(job_id)
        if self.discard_groups([[job_id]]):
            current = self.get(job_id).state
            raise IllegalTransitionError(
                job_id,
                current=current.value,
                requested="discarded",
                detail="only a job that never started can be discarded",
            )

    def discard_groups(self, groups: Sequence[Sequence[str]]) -> list[int]:
        """Delete the jobs of each group (one request's jobs) that never started, each
        group whole or not at all.

        :return: the positions of the groups kept, because one of their jobs has started
            (its message got through after all) or is gone.
        """
        if not groups:
            return []
        ids = [[canonical_id(job_id) for job_id in group] for group in groups]
        reply = self._call("discard", ids[0][0], "discarding jobs", {"groups": ids})
        return [int(position) - 1 for position in reply[1]]

    def transition(
        self,
        job_id: str,
        to: State,
        *,
        reason: str | None = None,
        fence: str | None = None,
        owner: str | None = None,
        takeover: bool = False,
        expected: Iterable[State] | None = None,
        result: Any = None,
        error: ErrorInfo | None = None,
        retry_in: float | None = None,
    ) -> Job:
        """Move the job to ``to`` if the state machine and the lease allow it; atomically.

        :param reason: recorded in the history entry.
        :param fence: the lease the caller holds; required to move a RUNNING job
            (unless ``takeover``); refused unless it is the job's live lease.
        :param owner: the new lease holder; required when ``to`` is RUNNING.
        :param takeover: move a RUNNING job whose lease has expired (its worker is gone).
        :param expected: states the caller believes the job is in; any other is refused.
        :param result: stored as the job's result (JSON-serializable or a pydantic model).
        :param error: stored as the job's error.
        :param retry_in: for RETRYING, seconds until the sweep publishes the next attempt.
        :raises IllegalTransitionError: the table (or ``expected``) forbids the move.
        :raises StaleLeaseError: ``fence`` is not the live lease, or a running job was
            moved without one.
        :raises LeaseActiveError: ``takeover`` while the lease is still alive.
        :raises AttemptsExhaustedError: a start beyond ``max_attempts``.
        """
        job_id = canonical_id(job_id)
        to, args, blob = self._move_args(
            to,
            reason=reason,
            fence=fence,
            owner=owner,
            takeover=takeover,
            expected=expected,
            result=result,
            error=error,
            retry_in=retry_in,
        )
        reply = self._call("transition", job_id, f"moving a job to {to}", args, blob, target=to)
        return self._moved(job_id, reply[1], int(reply[2]))

    def end_attempt(
        self,
        job_id: str,
        to: State,
        *,
        fence: str,
        reason: str | None = None,
        result: Any = None,
        error: ErrorInfo | None = None,
        retry_in: float | None = None,
    ) -> None:
        """Store how the running attempt under lease ``fence`` ended: :meth:`transition`
        for the worker, which needs no document back unless an observer does.

        :raises StaleLeaseError: ``fence`` is not the live lease.
        :raises IllegalTransitionError: the table forbids the move.
        """
        job_id = canonical_id(job_id)
        to, args, blob = self._move_args(
            to, reason=reason, fence=fence, result=result, error=error, retry_in=retry_in
        )
        if self._observer is None:
            args["quiet"] = True
        reply = self._call("transition", job_id, f"moving a job to {to}", args, blob, target=to)
        if self._observer is not None:
            self._moved(job_id, reply[1], int(reply[2]))

    def _move_args(
        self,
        to: State,
        *,
        reason: str | None,
        fence: str | None,
        owner: str | None = None,
        takeover: bool = False,
        expected: Iterable[State] | None = None,
        result: Any,
        error: ErrorInfo | None,
        retry_in: float | None,
    ) -> tuple[State, dict[str, Any], str]:
        to = State(to)
        if to is State.RUNNING and not owner:
            raise ValueError("a transition to RUNNING needs the new lease owner")
        args: dict[str, Any] = {"to": to.value, "reason": reason, "fence": fence}
        if to is State.RUNNING:
            args.update(owner=owner, lease_ms=self.lease_ms)
        if takeover:
            args["takeover"] = True
        if expected is not None:
            args["expected"] = sorted(State(s).value for s in expected)
        if error is not None:
            args["error"] = error.model_dump_json()
        if retry_in is not None:
            args["retry_ms"] = _millis(retry_in)
        blob = "" if result is None else to_json(result, what="result")
        return to, args, blob

    def cancel(self, job_id: str) -> CancelResult:
        """Ask for the job to be cancelled (DESIGN section 5's DELETE, every case)."""
        job_id = canonical_id(job_id)
        reply = self._call("cancel", job_id, "cancelling a job", target=State.CANCELLED)
        return CancelResult(CancelOutcome(reply[1]), self._moved(job_id, reply[2], int(reply[3])))

    def start(self, job_id: str, attempt: int, owner: str) -> StartResult:
        """Begin ``attempt`` under a new lease held by ``owner``, if this message is still due.

        One atomic step decides what a delivered message means: a job in CREATED or
        RETRYING whose previous attempt is ``attempt - 1`` starts; a RUNNING job whose
        lease is alive is a duplicate; a RUNNING job whose lease expired lost its
        worker, so that attempt fails ("worker lost") and the next one starts, or the
        job fails when no attempt is left; anything else is stale or finished.

        :raises JobNotFoundError: unknown id.
        """
        job_id = canonical_id(job_id)
        args = {
            "attempt": attempt,
            "owner": owner,
            "lease_ms": self.lease_ms,
            "lost_error": WORKER_LOST.model_dump_json(),
            "limits": self._limits or None,
        }
        reply = self._call("start", job_id, "starting a job", args, target=State.RUNNING)
        job = self._moved(job_id, reply[3], int(reply[4]))
        sealed = reply[5] if len(reply) > 5 and reply[5] else None
        return StartResult(reply[1] == "started", reply[2], job, sealed)

    def claim_due(self, *, limit: int = 100, visibility_seconds: float = 30.0) -> list[Claim]:
        """The claims of :meth:`claim`."""
        return list(self.claim(limit=limit, visibility_seconds=visibility_seconds).claims)

    def claim(self, *, limit: int = 100, visibility_seconds: float = 30.0) -> Due:
        """Claim the jobs the sweep must publish now (safe from many processes at once).

        Due outbox, retry and deferred entries come with the attempt their message
        starts; running jobs whose lease expired come with their current attempt, so the
        receiving worker takes them over. Each claim hides its entry for
        ``visibility_seconds``. Also says when the next retry or deferred job falls due.
        """
        args = {"limit": limit, "visibility_ms": _millis(visibility_seconds)}
        reply = self._call("claim", "", "claiming due jobs", args)
        claims = tuple(
            Claim(job_id, queue, int(attempt), int(priority))
            for job_id, queue, attempt, priority in reply[1]
        )
        due_in = int(reply[2]) if len(reply) > 2 else -1
        return Due(claims, None if due_in < 0 else due_in / 1000)

    def dispatched(self, sent: Iterable[tuple[str, int]]) -> None:
        """Take jobs off the outbox and the retry schedule once the broker confirmed their
        messages: first messages with one ``ZREM`` for all, retries one script call each.

        :param sent: ``(job id, attempt)`` of each confirmed message.
        """
        first: list[tuple[str, int]] = []
        retries: list[tuple[str, int]] = []
        for job_id, attempt in sent:
            (first if attempt == 1 else retries).append((job_id, attempt))
        if first and not retries:  # the submit path: one command for the whole batch
            with redis_errors("confirming dispatched jobs"):
                self.redis.zrem(self.keys.outbox, *(job_id for job_id, _ in first))
            return
        with self.redis.pipeline(transaction=False) as pipe:
            if first:
                pipe.zrem(self.keys.outbox, *(job_id for job_id, _ in first))
            for job_id, attempt in retries:
                self._call("dispatched", job_id, "", {"attempt": attempt}, client=pipe)
            with redis_errors("confirming dispatched jobs"):
                pipe.execute()

    # --- flow control ---------------------------------------------------------------

    def rerun(self, job_id: str) -> tuple[Job, str]:
        """A new CREATED job like the finished ``job_id`` (type, payload, attempts,
        priority, key), its ``rerun_of`` naming it; in the outbox, so it runs even if
        the caller never publishes its message.

        :return: the new job, and the broker queue its message goes to.

        :raises JobNotFoundError: unknown id.
        :raises IllegalTransitionError: the job has not finished.
        """
        job_id = canonical_id(job_id)
        new_id = str(uuid.uuid4())
        args = {"new_id": new_id, "dispatch_ms": self.outbox_ms}
        reply = self._call("rerun", job_id, "re-running a job", args)
        job = decode_job(new_id, reply[1])
        self._job_types = self._job_types | {job.type}
        return job, str(reply[2])

    def override(self, job_type: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the operator's override of ``job_type``'s limits (``flow.LIMIT_FIELDS``,
        checked already; None removes a field). It holds from the next start on, in
        every process; waiters are woken when a concurrency limit or the pause changes.

        :return: the override as stored now.
        """
        wake = any(name in changes for name in ("concurrency", "concurrency_per_key", "paused"))
        args = {
            "type": job_type,
            "shown": dict(changes),
            "used": script_form(changes),
            "wake": wake,
        }
        reply = self._call("override", "", "storing an override", args)
        stored: dict[str, Any] = json.loads(reply[1])
        return stored

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Every type's override, as :meth:`override` stored it."""
        return self.flow_usage().overrides

    def flow_usage(self) -> FlowUsage:
        """The overrides, the jobs waiting by type and reason, and the slots in use."""
        reply = self._call("flow", "", "reading the flow control")
        flat = reply[1]
        overrides: dict[str, dict[str, Any]] = {}
        waiting: dict[tuple[str, str], int] = {}
        used = {name: dict(limits) for name, limits in self._limits.items()}
        for name, value in zip(flat[::2], flat[1::2], strict=True):
            kind, _, rest = name.partition("|")
            if kind == "o":
                overrides[rest] = json.loads(value)
            elif kind == "s":
                used.setdefault(rest, {}).update(json.loads(value))
            elif kind == "w" and int(value) > 0:
                job_type, _, reason = rest.rpartition("|")
                waiting[(job_type, reason)] = int(value)
        running = {str(job_type): int(count) for job_type, count in reply[2]}
        concurrency = {
            name: int(limits["concurrency"])
            for name, limits in used.items()
            if limits.get("concurrency") is not None
        }
        return FlowUsage(overrides, waiting, running, concurrency)

    def fold_metrics(self, *, batch: int = 2000) -> int:
        """Add the transitions the metrics have not counted yet to the counters and
        histograms (``telemetry/metrics.py``); returns how many were folded.

        Safe from any number of processes at once: each entry is folded exactly once.
        """
        folded = 0
        while True:
            reply = self._call("fold", "", "folding the metrics", {"limit": batch})
            folded += int(reply[1])
            if int(reply[1]) < batch:
                return folded

    def counts(self) -> dict[tuple[str, State], int]:
        """How many jobs each known type has in each state, now."""
        reply = self._call("counts", "", "counting jobs", {"types": sorted(self._job_types)})
        flat = reply[2]
        return {
            (str(flat[i]), State(flat[i + 1])): int(flat[i + 2]) for i in range(0, len(flat), 3)
        }

    def renew_lease(self, job_id: str, owner: str) -> LeaseStatus:
        """Extend the running attempt's lease; also reads its cancel flag in the same trip.

        :raises StaleLeaseError: ``owner`` no longer holds the job.
        """
        job_id = canonical_id(job_id)
        reply = self._call(
            "renew", job_id, "renewing a lease", {"owner": owner, "lease_ms": self.lease_ms}
        )
        return LeaseStatus(expires_ms=int(reply[1]), cancel_requested=reply[2] == "1")

    def report_progress(self, job_id: str, owner: str, progress: Progress) -> None:
        """Record what the running attempt reports.

        :raises StaleLeaseError: ``owner`` no longer holds the job.
        """
        job_id = canonical_id(job_id)
        self._call(
            "progress", job_id, "recording progress", {"owner": owner}, progress.model_dump_json()
        )

    def delete_expired(self, *, limit: int = 500) -> Expired:
        """Delete up to ``limit`` finished jobs whose retention is over, each with every key
        and index entry it owns (its hash, its listing index entries, its idempotency
        record), in one atomic step: a reader sees a job whole or not at all.

        The metrics counters are not decreased. Safe from any number of processes at
        once: each job is deleted by one of them.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}")
        reply = self._call("expire", "", "deleting expired jobs", {"limit": limit})
        return Expired(deleted=int(reply[1]), more=int(reply[2]) >= limit)

    def adopt_finished(self, *, limit: int = 2000) -> int:
        """Give an expiry to the finished jobs that have none, a step of one walk of the job
        hashes that all processes share; returns how many were given one.

        Jobs that finished before retention existed (or while it was 0) would otherwise
        be kept for good. The walk is done once per deployment; once this store knows
        it is over, or when it keeps every job for good, this sends nothing.

        :param limit: how many of Redis's SCAN slots one step looks at.
        """
        if self._walked or not self._retains:
            return 0
        reply = self._call("adopt", "", "walking finished jobs", {"limit": limit})
        self._walked = reply[2] == 1
        return int(reply[1])

    def log_eviction_warning(self) -> None:
        """Log :meth:`eviction_warning` as a WARNING when there is one, at start-up.

        A Redis that does not answer is logged as a warning too, not raised: a process
        must start while Redis is away, and it says so itself once Redis is needed.
        """
        try:
            warning = self.eviction_warning()
        except StoreUnavailableError as exc:
            logger.warning("could not tell whether Redis evicts keys: %s", exc)
            return
        if warning is not None:
            logger.warning("%s", warning)

    def eviction_warning(self) -> str | None:
        """A sentence saying that Redis may evict keys, or None when it never does.

        An evicting Redis (``maxmemory-policy`` other than ``noeviction``) silently
        deletes jobs when it fills up, so the API and the worker warn at start-up and
        ``/readyz`` says so. A Redis that refuses ``CONFIG`` (a managed service) is
        not known to evict and gets no warning.

        :raises StoreUnavailableError: Redis did not answer.
        """
        with redis_errors("reading maxmemory-policy"):
            try:
                reply = self.redis.config_get("maxmemory-policy")
            except redis.ResponseError:
                return None
        policy = str(reply.get("maxmemory-policy", "noeviction"))
        if policy == "noeviction":
            return None
        return (
            f"Redis's maxmemory-policy is {policy!r}: when Redis fills up it deletes keys, "
            "jobs among them; set it to 'noeviction'"
        )

    # --- plumbing -----------------------------------------------------------------

    @staticmethod
    def _job(job_id: str, reply: list[Any]) -> Job:
        return decode_job(job_id, reply[1])

    def _moved(self, job_id: str, flat: list[str], moves: int) -> Job:
        """Decode a write's document and tell the observer of each move it made."""
        job = decode_job(job_id, flat)
        if self._observer is None or not moves:
            return job
        history = job.history
        for end in range(len(history) - moves, len(history)):
            # Each observer call sees the job as it was right after that move.
            at_move = job if end == len(history) - 1 else _as_of(job, end)
            try:
                self._observer(at_move, history[end - 1].state, history[end].state)
            except Exception:
                # The transition is persisted; an observer's bug must not look like its failure.
                logger.exception("transition observer failed for job %s", job.id)
        return job


def _id_of(flat: list[str]) -> str:
    """The ``id`` field of a flat document (an earlier request's job, for a repeat)."""
    names = flat[::2]
    return flat[names.index("id") * 2 + 1] if "id" in names else "?"


def _only(results: list[Submitted | OrchestratorError]) -> Submitted:
    [result] = results
    if isinstance(result, OrchestratorError):
        raise result
    return result


def _retention_by_type(plugins: Plugins | None) -> dict[str, float]:
    """The installed job types that set their own ``retention``, and its value."""
    if plugins is None:
        return {}
    return {
        name: registered.job_type.retention
        for name, registered in plugins.job_types.items()
        if registered.job_type.retention is not None
    }


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _as_of(job: Job, entry: int) -> Job:
    return job.model_copy(
        update={"state": job.history[entry].state, "history": job.history[: entry + 1]}
    )


WORKER_LOST = ErrorInfo(
    type="WorkerLost",
    message="the worker running this attempt stopped renewing its lease (it died or hung)",
    retryable=True,
)
