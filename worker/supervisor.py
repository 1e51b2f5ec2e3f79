"""The watch kept over the attempt a worker process is running.

One thread per process renews the attempt's lease (reading the cancel flag on the
same trip, the fallback for a missed pub/sub message), fires the token when the
timeout expires, flushes reported progress, and, when ``execute`` ignores a fired
token for longer than the grace period, hands the attempt to an escalation
callback that stores the outcome and ends the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from orchestrator_core import CancellationToken, Job, Progress
from orchestrator_core.exceptions import (
    JobNotFoundError,
    OrchestratorError,
    StaleLeaseError,
    StoreUnavailableError,
)
from orchestrator_core.store import JobStore

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 0.2
"""Seconds between progress writes, however often execute reports."""
EARLY_CANCEL_MEMORY = 5.0
"""Seconds a cancel for a job not (yet) running here is remembered: the job may have
started in Redis a moment before this process begins watching it."""


@dataclass(eq=False)
class RunningAttempt:
    """One running attempt: the job as it started, the lease it holds, and its token."""

    job: Job
    owner: str
    timeout: float | None = None
    started: float = field(default_factory=time.monotonic)
    lost: bool = False
    """Set when the lease turned out to belong to someone else: the outcome is moot."""
    fired_at: float | None = None
    """When the token fired (monotonic clock); the grace period counts from here."""
    token: CancellationToken = field(init=False)
    wake: Callable[[], None] | None = None
    """Called when progress is first reported since the last flush (set by the supervisor)."""
    _progress: Progress | None = None
    _finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.token = CancellationToken(
            self.job.id, self.job.attempts, on_progress=self.set_progress
        )

    def finish(self) -> bool:
        """Claim the right to store the outcome; only the first caller gets True."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            return True

    def set_progress(self, fraction: float | None, message: str | None) -> None:
        with self._lock:
            newly = self._progress is None
            self._progress = Progress(fraction=fraction, message=message)
        if newly and self.wake is not None:
            self.wake()

    @property
    def progress_pending(self) -> bool:
        return self._progress is not None

    def take_progress(self) -> Progress | None:
        with self._lock:
            progress, self._progress = self._progress, None
            return progress


class Supervisor:
    """Keeps watch over at most one attempt at a time (a worker process runs one job)."""

    def __init__(
        self,
        store: JobStore,
        *,
        lease_seconds: float,
        grace_seconds: float,
        on_escalate: Callable[[RunningAttempt], None],
    ) -> None:
        self._store = store
        self._renew_every = lease_seconds / 3
        self._idle_wait = self._renew_every / 2
        self._grace = grace_seconds
        self._on_escalate = on_escalate
        self._cond = threading.Condition()
        self._current: RunningAttempt | None = None
        self._early: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="attempt-supervisor", daemon=True)
        self._thread.start()

    def begin(self, attempt: RunningAttempt) -> None:
        attempt.wake = self._wake
        with self._cond:
            self._current = attempt
            # The thread finds a new attempt by itself in time for its first renewal; only
            # a timeout may fall due before it would look.
            if attempt.timeout is not None:
                self._cond.notify()
            # A cancel requested before the start is in the job; one published between
            # the start in Redis and this moment is in the early cancels.
            early = self._early.pop(attempt.job.id, None) is not None
        if early or attempt.job.cancel_requested:
            self.fire(attempt, "cancelled")

    @contextmanager
    def watching(self, attempt: RunningAttempt) -> Iterator[None]:
        """Keep watch over ``attempt`` while ``execute`` runs in the ``with`` block."""
        self.begin(attempt)
        try:
            yield
        finally:
            self.end(attempt)

    def end(self, attempt: RunningAttempt) -> None:
        with self._cond:
            if self._current is attempt:
                self._current = None

    def cancel(self, job_id: str) -> None:
        """A cancel request for ``job_id`` arrived; fire the token if that job runs here."""
        with self._cond:
            attempt = self._current
            if attempt is None or attempt.job.id != job_id:
                now = time.monotonic()
                self._early = {
                    known: at for known, at in self._early.items() if now - at < EARLY_CANCEL_MEMORY
                }
                self._early[job_id] = now
                return
        self.fire(attempt, "cancelled")

    def fire(self, attempt: RunningAttempt, reason: str) -> None:
        if attempt.token.cancel(reason):
            logger.info(
                "job %s attempt %d: token fired (%s)", attempt.job.id, attempt.job.attempts, reason
            )
            with self._cond:
                attempt.fired_at = time.monotonic()
                self._cond.notify()

    def flush_progress(self, attempt: RunningAttempt) -> None:
        progress = attempt.take_progress()
        if progress is None:
            return
        try:
            self._store.report_progress(attempt.job.id, attempt.owner, progress)
        except (StaleLeaseError, JobNotFoundError):
            self._lost(attempt)
        except StoreUnavailableError:
            logger.warning("job %s: progress not stored, Redis unavailable", attempt.job.id)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        renew_at = flushed_at = 0.0
        watched: RunningAttempt | None = None
        while True:
            with self._cond:
                attempt = self._current
                if attempt is None:
                    # Short jobs come and go without waking this thread: it looks now and
                    # then, and an attempt's first renewal is due a third of a lease after
                    # its start, long after the first look.
                    self._cond.wait(self._idle_wait)
                    continue
                now = time.monotonic()
                if attempt is not watched:
                    watched = attempt
                    renew_at, flushed_at = attempt.started + self._renew_every, -PROGRESS_EVERY
                deadlines = [renew_at]
                if attempt.progress_pending:
                    deadlines.append(flushed_at + PROGRESS_EVERY)
                if attempt.timeout is not None and not attempt.token.cancelled:
                    deadlines.append(attempt.started + attempt.timeout)
                if attempt.fired_at is not None:
                    deadlines.append(attempt.fired_at + self._grace)
                wait = min(deadlines) - now
                if wait > 0:
                    self._cond.wait(wait)
                    continue
            # Redis calls and escalation happen outside the lock.
            try:
                if now >= renew_at:
                    renew_at = now + self._renew(attempt)
                if attempt.progress_pending and now >= flushed_at + PROGRESS_EVERY:
                    self.flush_progress(attempt)
                    flushed_at = now
                if attempt.timeout is not None and now >= attempt.started + attempt.timeout:
                    self.fire(attempt, "timeout")
                fired_at = attempt.fired_at
                if fired_at is not None and now >= fired_at + self._grace:
                    self._escalate(attempt)
            except Exception:
                # This thread guards every attempt of the process; it must outlive any bug.
                logger.exception("supervising job %s failed", attempt.job.id)
                renew_at = flushed_at = time.monotonic() + 1.0

    def _renew(self, attempt: RunningAttempt) -> float:
        """Renew the lease; returns the seconds until the next renewal."""
        try:
            status = self._store.renew_lease(attempt.job.id, attempt.owner)
        except (StaleLeaseError, JobNotFoundError):
            self._lost(attempt)
            return self._renew_every
        except StoreUnavailableError:
            logger.warning("job %s: lease not renewed, Redis unavailable", attempt.job.id)
            return min(1.0, self._renew_every)
        except OrchestratorError:
            logger.exception("job %s: lease not renewed", attempt.job.id)
            return self._renew_every
        if status.cancel_requested:
            self.fire(attempt, "cancelled")
        return self._renew_every

    def _lost(self, attempt: RunningAttempt) -> None:
        if not attempt.lost:
            attempt.lost = True
            logger.warning(
                "job %s attempt %d lost its lease to another worker; stopping it",
                attempt.job.id,
                attempt.job.attempts,
            )
        self.fire(attempt, "cancelled")

    def _escalate(self, attempt: RunningAttempt) -> None:
        with self._cond:
            if self._current is attempt:
                self._current = None
        self._on_escalate(attempt)
