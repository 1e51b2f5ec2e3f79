"""Submitting a job: store it, publish its first message, confirm it left the outbox."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.exceptions import (
    BrokerUnavailableError,
    OrchestratorError,
    StoreUnavailableError,
)
from orchestrator_core.job_type import JobType
from orchestrator_core.store import Created, JobStore

logger = logging.getLogger(__name__)


def submit(
    store: JobStore,
    publisher: Publisher,
    job_type: JobType,
    payload: Mapping[str, Any],
    *,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
) -> Created:
    """Create the job and queue its first attempt: three round trips, none of them lossy.

    The payload must already be validated against ``job_type.payload``. With an
    ``idempotency_key``, a repeated request gets the first job back (``created`` is
    False) and publishes nothing.

    :raises BrokerUnavailableError: the publish was not confirmed; the job was
        discarded, so the client can simply try again.
    :raises StoreUnavailableError: Redis did not answer; no job was made, or one that
        the sweep will publish.
    """
    queue = queue_name(store.keys, job_type)
    attempts = max_attempts or job_type.max_attempts
    if idempotency_key is None:
        created = Created(
            store.create(job_type.name, payload, max_attempts=attempts, queue=queue), True
        )
    else:
        created = store.create_once(
            job_type.name,
            payload,
            max_attempts=attempts,
            queue=queue,
            idempotency_key=idempotency_key,
        )
        if not created.created:
            return created
    job = created.job
    try:
        publisher.publish(job.id, 1, queue)
    except BrokerUnavailableError:
        try:
            store.discard(job.id)
        except OrchestratorError:
            # Still in the outbox: the sweep publishes it once the broker is back.
            logger.exception("job %s could not be discarded after a failed publish", job.id)
        raise
    try:
        store.dispatched([(job.id, 1)])
    except StoreUnavailableError:
        # Queued and stored: it will run. The outbox entry only costs a duplicate message.
        logger.warning("job %s queued; its outbox entry stays until the sweep", job.id)
    return created
