"""Jobs taken through known transitions by hand, as a worker would move them."""

from __future__ import annotations

from orchestrator_core import State
from orchestrator_core.models import ErrorInfo
from orchestrator_core.store import JobStore

ERROR = ErrorInfo(type="Boom", message="it broke", retryable=True)


def completed_after_a_retry(store: JobStore, job_type: str = "demo.echo") -> str:
    """A job through a failed attempt to COMPLETED: five transitions. Returns its id."""
    job = store.create(job_type, {"n": 1}, max_attempts=3)
    store.start(job.id, 1, "w1")
    store.transition(job.id, State.RETRYING, fence="w1", error=ERROR, reason="attempt failed")
    store.start(job.id, 2, "w2")
    store.transition(job.id, State.COMPLETED, fence="w2", result={"ok": True})
    return job.id
