"""The sweep: publishes what the outbox and the retry schedule say is due, and lost jobs,
folds the metrics, and deletes the finished jobs whose retention is over.

Safe to run in any number of processes at once: each due entry is claimed atomically
in Redis, and a message sent twice is dropped by the worker that receives it second;
each expired job is deleted by one sweeper, in one atomic step.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.exceptions import BrokerUnavailableError, StoreUnavailableError
from orchestrator_core.store import JobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one sweep did."""

    published: int
    """Messages the broker confirmed."""
    deleted: int
    """Finished jobs deleted because their retention was over."""
    more: bool
    """A batch was full, so more may be due already: the next sweep starts at once."""
    due_in: float | None = None
    """Seconds until the next retry or deferred job falls due (None: none waits)."""


class Sweeper:
    """Publishes due jobs: new ones whose publish was never confirmed, retries whose
    backoff is over, and running ones whose lease expired (their worker is gone); and
    deletes finished jobs once their retention is over.

    :param expiry_batch: the most jobs one sweep deletes (one atomic step in Redis, so
        a short one: other clients wait while it runs).
    """

    def __init__(
        self,
        store: JobStore,
        publisher: Publisher,
        *,
        batch: int = 100,
        visibility_seconds: float = 30.0,
        expiry_batch: int = 500,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.batch = batch
        self.visibility_seconds = visibility_seconds
        self.expiry_batch = expiry_batch

    def sweep_once(self) -> Sweep:
        """Publish one batch of due jobs, fold the metrics, delete one batch of expired jobs.

        A publish that fails leaves its claim to expire, so the job is tried again
        after the visibility window.
        """
        due = self.store.claim(limit=self.batch, visibility_seconds=self.visibility_seconds)
        claims = due.claims
        outcomes = self.publisher.publish_many(
            [Message(claim.job_id, claim.attempt, claim.queue, claim.priority) for claim in claims]
        )
        sent = [
            (claim.job_id, claim.attempt)
            for claim, error in zip(claims, outcomes, strict=True)
            if error is None
        ]
        errors = [error for error in outcomes if error is not None]
        if errors:
            logger.warning(
                "sweep published %d of %d due jobs: %s", len(sent), len(claims), errors[0]
            )
        if sent:
            self.store.dispatched(sent)
            logger.info("sweep published %d due jobs", len(sent))
        # Each sweep also folds the transitions since the last into the metrics, so they
        # stay current (and the event stream's cap never passes an unfolded entry) even
        # when nobody scrapes.
        self.store.fold_metrics()
        expired = self.store.delete_expired(limit=self.expiry_batch)
        if expired.deleted:
            logger.info("sweep deleted %d finished jobs past their retention", expired.deleted)
        self.store.adopt_finished()
        full = len(claims) >= self.batch or expired.more
        return Sweep(len(sent), expired.deleted, full, due.due_in)

    def run(
        self, stop: threading.Event, *, interval: float, wake: threading.Event | None = None
    ) -> None:
        """Sweep until ``stop``: again after ``interval`` seconds, or when the next retry
        or deferred job falls due if that is sooner, or at once after a full batch or
        when ``wake`` is set (the store announces a deferred job due sooner than that:
        see ``Keys.wake_channel``). Whoever sets ``stop`` sets ``wake`` too."""
        wake = wake if wake is not None else threading.Event()
        while not stop.is_set():
            wake.clear()
            pause = interval
            try:
                sweep = self.sweep_once()
                if sweep.more:
                    continue
                if sweep.due_in is not None:
                    pause = min(interval, sweep.due_in)
            except (StoreUnavailableError, BrokerUnavailableError):
                logger.warning("sweep failed; trying again in %.1f s", interval, exc_info=True)
            except Exception:
                logger.exception("sweep failed unexpectedly; trying again in %.1f s", interval)
            wake.wait(pause)
