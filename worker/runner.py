"""Runs one job message through its plugin and stores the outcome (DESIGN section 3).

Every write goes through the store's fenced transitions: an attempt that lost its
lease to a newer one cannot store anything.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from orchestrator_core import JobType, Plugins, State
from orchestrator_core.attempt import Outcome, escalated, failed, perform, settle
from orchestrator_core.dispatch.broker import queue_name as job_type_queue
from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.exceptions import (
    CorruptJobError,
    JobNotFoundError,
    SealedPayloadError,
    StaleLeaseError,
    StoreUnavailableError,
    UnknownJobTypeError,
)
from orchestrator_core.sealing import Sealer
from orchestrator_core.states import STARTABLE_STATES
from orchestrator_core.store import JobStore, StartResult
from orchestrator_core.telemetry.logs import bind_job_type, job_context
from worker.supervisor import RunningAttempt, Supervisor

logger = logging.getLogger(__name__)

STARTABLE_VALUES = frozenset(state.value for state in STARTABLE_STATES)

ESCALATED_EXIT = 75
"""Exit status of a worker process that stopped an attempt which ignored its token."""


class Runner:
    """Turns a delivered ``(job_id, attempt)`` message into one supervised attempt."""

    def __init__(
        self,
        store: JobStore,
        plugins: Plugins,
        *,
        worker_name: str,
        lease_seconds: float,
        grace_seconds: float,
        sealer: Sealer | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        """Queues the message again of a job whose start the store lost (see
        :meth:`_requeue_lost_start`); None leaves such a job to an operator."""
        self.plugins = plugins
        self.sealer = sealer if sealer is not None else Sealer()
        """Opens the sealed payloads of types with secret fields."""
        self.worker_name = worker_name
        self.grace_seconds = grace_seconds
        self.lease_seconds = lease_seconds
        self.supervisor = Supervisor(
            store,
            lease_seconds=lease_seconds,
            grace_seconds=grace_seconds,
            on_escalate=self._escalate,
        )

    def run(self, job_id: str, attempt: int) -> None:
        with job_context(job_id, attempt):
            self._run(job_id, attempt)

    def _run(self, job_id: str, attempt: int) -> None:
        owner = f"{self.worker_name}:{uuid.uuid4().hex[:12]}"
        try:
            start = self.store.start(job_id, attempt, owner)
        except JobNotFoundError:
            logger.warning("dropping a message for unknown job %r", job_id)
            return
        except CorruptJobError:
            logger.exception("dropping a message for malformed job %r", job_id)
            return
        if not start.started:
            logger.info("dropping message for job %s attempt %d: %s", job_id, attempt, start.reason)
            return
        job = start.job
        bind_job_type(job.type)
        current = RunningAttempt(job=job, owner=owner)
        try:
            job_type = self.plugins.get(job.type).job_type
        except UnknownJobTypeError as exc:
            self._store_outcome(
                current, None, failed("UnknownJobType", f"{exc} (on {self.worker_name})")
            )
            return
        current.timeout = job_type.timeout
        try:
            payload = self._payload(start, job_type)
        except SealedPayloadError as exc:
            # Never execute with the masked values: no retry opens it without the key.
            self._store_outcome(current, job_type, failed(type(exc).__name__, str(exc)))
            return
        outcome = perform(job_type, payload, current.token, watch=self.supervisor.watching(current))
        if not current.finish():
            _wait_for_exit()  # the supervisor is storing the escalated outcome and ending us
        self.supervisor.flush_progress(current)
        self._store_outcome(current, job_type, outcome)

    def _payload(self, start: StartResult, job_type: JobType) -> Mapping[str, Any]:
        """What ``execute``'s payload is validated from: the stored payload, or for a
        type with secret fields its sealed copy, which holds their real values.

        :raises SealedPayloadError: the sealed copy is missing or cannot be opened here.
        """
        if not job_type.has_secrets:
            return start.job.payload
        return self.sealer.unseal(start.sealed, job_id=start.job.id)

    def _escalate(self, attempt: RunningAttempt) -> None:
        """``execute`` ignored its fired token past the grace: store the outcome, stop it."""
        if not attempt.finish():
            return
        job_type = self.plugins.job_types[attempt.job.type].job_type
        outcome = escalated(job_type, attempt.token, self.grace_seconds)
        logger.error("job %s attempt %d: %s", attempt.job.id, attempt.job.attempts, outcome.reason)
        self._store_outcome(attempt, job_type, outcome)
        # Threads cannot be killed: ending the process is what frees the slot. The pool
        # starts a fresh process, and the redelivered message finds the job settled.
        logging.shutdown()
        os._exit(ESCALATED_EXIT)

    def _store_outcome(
        self, attempt: RunningAttempt, job_type: JobType | None, outcome: Outcome
    ) -> None:
        job = attempt.job
        settled = settle(outcome, job_type, attempt=job.attempts, max_attempts=job.max_attempts)
        stored = settled.outcome
        deadline = time.monotonic() + self.lease_seconds
        while True:
            try:
                self.store.end_attempt(
                    job.id,
                    stored.state,
                    fence=attempt.owner,
                    reason=stored.reason,
                    result=stored.result,
                    error=stored.error,
                    retry_in=settled.retry_in,
                )
            except StaleLeaseError as exc:
                logger.warning(
                    "job %s attempt %d lost its lease; its outcome (%s) is discarded",
                    job.id,
                    job.attempts,
                    stored.state,
                )
                self._requeue_lost_start(attempt, job_type, exc)
                return
            except StoreUnavailableError:
                if time.monotonic() > deadline:
                    # The lease runs out and the sweep hands the job to another attempt.
                    logger.exception("job %s: outcome %s not stored", job.id, stored.state)
                    return
                logger.warning("job %s: Redis unavailable, retrying the outcome", job.id)
                time.sleep(0.5)
                continue
            level = logging.DEBUG if stored.state is State.COMPLETED else logging.WARNING
            logger.log(level, "job %s attempt %d: %s", job.id, job.attempts, stored.state)
            return

    def _requeue_lost_start(
        self, attempt: RunningAttempt, job_type: JobType | None, refused: StaleLeaseError
    ) -> None:
        """A job that is startable again, with no lease on it, lost the write that
        started this attempt: a Redis failover promoted a replica that never had it. Its
        message was this one, which is acked once this returns, so nothing else would
        ever start the job: queue a message for the same attempt again (a duplicate
        is dropped by the worker that receives it)."""
        if refused.holder or refused.state not in STARTABLE_VALUES or self.publisher is None:
            return
        job = attempt.job
        queue = (
            self.store.keys.queue(job.type)
            if job_type is None
            else job_type_queue(self.store.keys, job_type)
        )
        message = Message(job.id, job.attempts, queue, job.priority)
        [error] = self.publisher.publish_many([message])
        if error is None:
            logger.warning("job %s: its start was lost (a Redis failover?); queued again", job.id)
        else:
            logger.error("job %s: its start was lost and it could not be queued: %s", job.id, error)


def _wait_for_exit() -> None:
    while True:
        time.sleep(3600)
