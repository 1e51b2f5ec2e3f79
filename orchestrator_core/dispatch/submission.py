"""Submitting jobs: store them, publish their first messages, take them off the outbox.

Requests from any thread (an API's event loop, a CLI, a bench) wait in one queue; a
thread of the :class:`Submitter` takes everything waiting and submits it together: one
store call creates every request's jobs, their messages are published with their
confirms awaited together, and one command takes them off the outbox. A lone request
goes alone, at once; under load, requests share those round trips, so a submission
costs a fraction of them. Each request keeps its own outcome:

- its jobs are stored and their messages confirmed: done, every job will run;
- a message is not confirmed: the request's jobs are discarded, as if never
  submitted, and it fails with ``BrokerUnavailableError`` (unless one of them has
  started meanwhile, so its message did get through: then the rest stay in the
  outbox, the sweep publishes them, and the request is done);
- Redis does not answer: it fails with ``StoreUnavailableError``; jobs that were
  stored are published by the sweep.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.exceptions import (
    BrokerUnavailableError,
    OrchestratorError,
    StoreUnavailableError,
)
from orchestrator_core.job_type import JobType
from orchestrator_core.models import Job
from orchestrator_core.sealing import Sealer
from orchestrator_core.store import Created, JobStore, NewJob, Submitted, Ticket

logger = logging.getLogger(__name__)

MAX_BATCH_JOBS = 1000
"""At most this many jobs go in one store call and one run of publishes."""

THREADS = 4
"""Batches in flight at once: while one waits for its confirms (the broker writes
persistent messages to disk first), the next forms and goes out."""


@dataclass(eq=False)
class _Request:
    ticket: Ticket
    queues: tuple[str, ...]
    future: Future[Submitted] = field(default_factory=Future)


class Submitter:
    """Submits jobs, many requests at a time (see the module's description).

    Thread-safe; its threads start with the first request, and stop with
    :meth:`close`, after the requests already waiting.

    :param sealer: seals the payloads of types with secret fields (``sealing.py``);
        None seals them unencrypted, as with no ``ORCHESTRATOR_PAYLOAD_KEY``.
    """

    def __init__(
        self, store: JobStore, publisher: Publisher, *, sealer: Sealer | None = None
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.sealer = sealer if sealer is not None else Sealer()
        self._waiting: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def new_job(
        self,
        job_type: JobType,
        payload: BaseModel | Mapping[str, Any],
        *,
        max_attempts: int | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
        not_before_us: int | None = None,
        schedule: str | None = None,
    ) -> NewJob:
        """What submitting ``payload`` as a job of ``job_type`` asks the store for;
        ``max_attempts`` and ``priority`` default to the type's own.

        :param payload: the validated payload model, or its JSON (validated already).
            For a type with secret fields the job stores it masked, and sealed with
            the real values for the worker; a JSON one is validated again for that.
        :param not_before_us: when the job may start (microseconds since the epoch).
        :raises SerializationError: the payload is not JSON.
        """
        attempts = max_attempts or job_type.max_attempts
        flow: dict[str, Any] = {
            "queue": queue_name(self.store.keys, job_type),
            "priority": job_type.priority if priority is None else priority,
            "concurrency_key": concurrency_key,
            "not_before_us": not_before_us,
            "schedule": schedule,
        }
        if not job_type.has_secrets:
            data = job_type.dump_payload(payload) if isinstance(payload, BaseModel) else payload
            return NewJob(job_type.name, data, attempts, **flow)
        model = payload if isinstance(payload, BaseModel) else job_type.validate_payload(payload)
        sealed = self.sealer.seal(job_type.reveal_payload(model))
        masked = job_type.dump_payload(model)
        return NewJob(job_type.name, masked, attempts, sealed=sealed, **flow)

    def rerun(self, job_id: str) -> Job:
        """A new job like the finished ``job_id`` (``JobStore.rerun``), its message
        published. A publish that fails is left to the sweep, which publishes the job
        from the outbox: either way it runs.

        :raises JobNotFoundError: unknown id.
        :raises IllegalTransitionError: the job has not finished.
        :raises StoreUnavailableError: Redis did not answer.
        """
        job, queue = self.store.rerun(job_id)
        [error] = self.publisher.publish_many([Message(job.id, 1, queue, job.priority)])
        if error is not None:
            logger.warning("re-run %s of %s: %s; the sweep publishes it", job.id, job_id, error)
            return job
        try:
            self.store.dispatched([(job.id, 1)])
        except StoreUnavailableError:
            logger.warning("re-run %s: its outbox entry stays until the sweep", job.id)
        return job

    def submit(self, jobs: Sequence[NewJob], *, idempotency_key: str | None = None) -> Submitted:
        """Submit one request's jobs and wait for its outcome.

        :raises BrokerUnavailableError: a message was not confirmed; nothing is left.
        :raises StoreUnavailableError: Redis did not answer.
        :raises IdempotencyConflictError: the key names another request's jobs.
        """
        return self.begin(jobs, idempotency_key=idempotency_key).result()

    async def submit_async(
        self, jobs: Sequence[NewJob], *, idempotency_key: str | None = None
    ) -> Submitted:
        """:meth:`submit` for an event loop, which it never blocks."""
        return await asyncio.wrap_future(self.begin(jobs, idempotency_key=idempotency_key))

    def submit_here(
        self, jobs: Sequence[NewJob], *, idempotency_key: str | None = None
    ) -> Submitted:
        """:meth:`submit` in the calling thread, sharing no round trip with other requests."""
        request = self._request(jobs, idempotency_key)
        self._submit([request])
        return request.future.result()

    def begin(
        self, jobs: Sequence[NewJob], *, idempotency_key: str | None = None
    ) -> Future[Submitted]:
        """Queue one request's jobs; the future holds its outcome."""
        request = self._request(jobs, idempotency_key)
        with self._lock:
            if self._closed:
                raise BrokerUnavailableError("the submitter is closed")
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"submitter-{n}", daemon=True)
                    for n in range(THREADS)
                ]
                for thread in self._threads:
                    thread.start()
            self._waiting.put(request)
        return request.future

    def close(self, timeout: float = 10.0) -> None:
        """Submit what is waiting, then stop the thread."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            for _ in threads:
                self._waiting.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _request(self, jobs: Sequence[NewJob], idempotency_key: str | None) -> _Request:
        return _Request(
            Ticket(tuple(jobs), idempotency_key),
            tuple(job.queue_in(self.store.keys) for job in jobs),
        )

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._waiting.get()
            if first is None:
                return
            batch, jobs = [first], len(first.ticket.jobs)
            while jobs < MAX_BATCH_JOBS:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
                jobs += len(more.ticket.jobs)
            try:
                self._submit(batch)
            except Exception as exc:
                # This thread serves every request of the process: it must outlive any bug.
                logger.exception("submitting %d request(s) failed", len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)

    def _submit(self, batch: list[_Request]) -> None:
        try:
            results = self.store.submit([request.ticket for request in batch])
        except OrchestratorError as exc:
            for request in batch:
                request.future.set_exception(exc)
            return
        fresh: list[tuple[_Request, Submitted]] = []
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, OrchestratorError):
                request.future.set_exception(result)
            elif not result.created:
                request.future.set_result(result)  # a repeat: its jobs were published before
            else:
                fresh.append((request, result))
        # A job that waits for its time has no message yet: the sweep publishes it when due.
        sends = {
            request: [
                Message(job.id, 1, queue, new.priority)
                for job, new, queue in zip(
                    result.jobs, request.ticket.jobs, request.queues, strict=True
                )
                if new.not_before_us is None
            ]
            for request, result in fresh
        }
        outcomes = iter(
            self.publisher.publish_many([m for messages in sends.values() for m in messages])
        )
        failed: list[tuple[_Request, Submitted, BrokerUnavailableError]] = []
        confirmed: list[tuple[_Request, Submitted]] = []
        for request, result in fresh:
            errors = [error for _ in sends[request] if (error := next(outcomes)) is not None]
            if errors:
                failed.append((request, result, errors[0]))
            else:
                confirmed.append((request, result))
        confirmed.extend(self._discard(failed))
        try:
            self.store.dispatched(
                [(m.job_id, 1) for request, _ in confirmed for m in sends[request]]
            )
        except StoreUnavailableError:
            # Queued and stored: they will run. The outbox entries cost duplicate messages.
            logger.warning(
                "%d job(s) queued; their outbox entries stay until the sweep", len(confirmed)
            )
        for request, result in confirmed:
            request.future.set_result(result)

    def _discard(
        self, failed: list[tuple[_Request, Submitted, BrokerUnavailableError]]
    ) -> list[tuple[_Request, Submitted]]:
        """Undo the requests whose messages were not all confirmed; returns those kept
        because one of their jobs has started (its message got through after all)."""
        if not failed:
            return []
        try:
            kept = set(self.store.discard_groups([[j.id for j in r.jobs] for _, r, _ in failed]))
        except OrchestratorError:
            # Still in the outbox: the sweep publishes them once the broker is back.
            logger.exception(
                "%d request(s) could not be discarded after a failed publish", len(failed)
            )
            kept = set()
        done = []
        for position, (request, result, error) in enumerate(failed):
            if position in kept:
                done.append((request, result))
            else:
                request.future.set_exception(error)
        return done


def submit(
    store: JobStore,
    publisher: Publisher,
    job_type: JobType,
    payload: BaseModel | Mapping[str, Any],
    *,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    sealer: Sealer | None = None,
    priority: int | None = None,
    concurrency_key: str | None = None,
    not_before_us: int | None = None,
) -> Created:
    """Create one job and queue its first attempt, without a :class:`Submitter`'s thread:
    three round trips (store, confirmed publish, outbox), none of them lossy.

    The payload must already be validated against ``job_type.payload``. With an
    ``idempotency_key``, a repeated request gets the first job back (``created`` is
    False) and publishes nothing. ``sealer`` seals secret fields (see :class:`Submitter`);
    the flow control's fields are those of :meth:`Submitter.new_job`.

    :raises BrokerUnavailableError: the publish was not confirmed; the job was
        discarded, so the client can simply try again.
    :raises StoreUnavailableError: Redis did not answer; no job was made, or one that
        the sweep will publish.
    """
    submitter = Submitter(store, publisher, sealer=sealer)
    job = submitter.new_job(
        job_type,
        payload,
        max_attempts=max_attempts,
        priority=priority,
        concurrency_key=concurrency_key,
        not_before_us=not_before_us,
    )
    result = submitter.submit_here([job], idempotency_key=idempotency_key)
    return Created(result.jobs[0], result.created)
