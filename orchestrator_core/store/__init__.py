"""The Redis job store: the one writer of job state, and everything it is made of.

- ``jobs.py``: :class:`JobStore`, the operations on jobs;
- ``script.py`` and ``lua/``: the server-side script every write goes through;
- ``tickets.py``: what a submission asks for: jobs created together or not at all;
- ``replies.py``: what the operations answer, and the script's refusals as exceptions;
- ``records.py``: how a job document is laid out in Redis and read back;
- ``keys.py``: every key and broker name under the prefix;
- ``connection.py``: Redis clients with explicit timeouts.
"""

from orchestrator_core.store.jobs import MAX_PAGE, WORKER_LOST, JobStore, Observer, canonical_id
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
)
from orchestrator_core.store.tickets import NewJob, Ticket

__all__ = [
    "MAX_PAGE",
    "WORKER_LOST",
    "CancelOutcome",
    "CancelResult",
    "Claim",
    "Created",
    "Due",
    "Expired",
    "FlowUsage",
    "JobStore",
    "LeaseStatus",
    "NewJob",
    "Observer",
    "Page",
    "StartResult",
    "Submitted",
    "Ticket",
    "canonical_id",
]
