"""The sweep: publishes what the outbox and the retry schedule say is due, and lost jobs,
and folds the metrics.

Safe to run in any number of processes at once: each due entry is claimed atomically
in Redis, and a message sent twice is dropped by the worker that receives it second.
"""

from __future__ import annotations

import logging
import threading

from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.exceptions import BrokerUnavailableError, StoreUnavailableError
from orchestrator_core.store import JobStore

logger = logging.getLogger(__name__)


class Sweeper:
    """Publishes due jobs: new ones whose publish was never confirmed, retries whose
    backoff is over, and running ones whose lease expired (their worker is gone)."""

    def __init__(
        self,
        store: JobStore,
        publisher: Publisher,
        *,
        batch: int = 100,
        visibility_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.batch = batch
        self.visibility_seconds = visibility_seconds

    def sweep_once(self) -> int:
        """Publish one batch of due jobs; returns how many messages were confirmed.

        A publish that fails leaves its claim to expire, so the job is tried again
        after the visibility window.
        """
        claims = self.store.claim_due(limit=self.batch, visibility_seconds=self.visibility_seconds)
        outcomes = self.publisher.publish_many(
            [Message(claim.job_id, claim.attempt, claim.queue) for claim in claims]
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
        return len(sent)

    def run(self, stop: threading.Event, *, interval: float) -> None:
        """Sweep every ``interval`` seconds (at once again after a full batch) until ``stop``."""
        while not stop.is_set():
            try:
                full = self.sweep_once() >= self.batch
            except (StoreUnavailableError, BrokerUnavailableError):
                logger.warning("sweep failed; trying again in %.1f s", interval, exc_info=True)
                full = False
            except Exception:
                logger.exception("sweep failed unexpectedly; trying again in %.1f s", interval)
                full = False
            if not full:
                stop.wait(interval)
