"""Submitting a job: store it, publish its first message, confirm it left the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator_core.broker import Publisher, queue_name
from orchestrator_core.job_type import JobType
from orchestrator_core.models import Job
from orchestrator_core.store import JobStore


def submit(
    store: JobStore,
    publisher: Publisher,
    job_type: JobType,
    payload: Mapping[str, Any],
    *,
    max_attempts: int | None = None,
    job_id: str | None = None,
) -> Job:
    """Create the job and queue its first attempt: three round trips, none of them lossy.

    The payload must already be validated against ``job_type.payload``.

    :raises BrokerUnavailableError: the publish was not confirmed. The job is stored
        and stays in the outbox, so the sweep publishes it once the broker is back.
    """
    queue = queue_name(store.keys, job_type)
    job = store.create(
        job_type.name,
        payload,
        max_attempts=max_attempts or job_type.max_attempts,
        queue=queue,
        job_id=job_id,
    )
    publisher.publish(job.id, 1, queue)
    store.dispatched([(job.id, 1)])
    return job
