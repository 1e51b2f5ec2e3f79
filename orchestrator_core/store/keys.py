"""Every Redis key and broker name the orchestrator uses, all under the configured prefix.

The keys of one job share the hash tag ``{<job id>}`` so they land in one Redis
Cluster slot. The listing indexes are global sorted sets scored by a creation
sequence number, which never changes, so a cursor is just that number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from orchestrator_core.states import State


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one prefix."""

    prefix: str

    def job(self, job_id: str) -> str:
        """Hash holding the job document's fields."""
        return f"{self.prefix}:job:{{{job_id}}}"

    def history(self, job_id: str) -> str:
        """List of the job's history entries, oldest first."""
        return f"{self.prefix}:job:{{{job_id}}}:history"

    @property
    def sequence(self) -> str:
        """Counter giving each new job its listing position."""
        return f"{self.prefix}:seq"

    @property
    def index_all(self) -> str:
        """Sorted set of every job id, scored by creation sequence."""
        return f"{self.prefix}:idx:all"

    @property
    def leases(self) -> str:
        """Sorted set of running job ids scored by lease expiry (ms), for the sweep."""
        return f"{self.prefix}:leases"

    @property
    def dispatch(self) -> str:
        """Sorted set of job ids scored by when they must be published (ms): outbox and retries."""
        return f"{self.prefix}:dispatch"

    @property
    def index_state_base(self) -> str:
        """Stem of the per-state indexes; the store script appends the state name."""
        return f"{self.prefix}:idx:state:"

    @property
    def index_type_base(self) -> str:
        """Stem of the per-type indexes; ``<type>`` and ``<type>:<state>`` are appended."""
        return f"{self.prefix}:idx:type:"

    def index_state(self, state: State) -> str:
        return f"{self.index_state_base}{state.value}"

    def index_type(self, job_type: str) -> str:
        return f"{self.index_type_base}{job_type}"

    def index_type_state(self, job_type: str, state: State) -> str:
        return f"{self.index_type_base}{job_type}:{state.value}"

    def index(self, *, state: State | None, job_type: str | None) -> str:
        """The index that answers a listing filtered by ``state`` and/or ``job_type``."""
        if job_type is not None and state is not None:
            return self.index_type_state(job_type, state)
        if job_type is not None:
            return self.index_type(job_type)
        if state is not None:
            return self.index_state(state)
        return self.index_all

    @property
    def events(self) -> str:
        """Stream with one entry per persisted transition, oldest first, length-capped."""
        return f"{self.prefix}:events"

    @property
    def metrics(self) -> str:
        """Hash of the job counters and histograms the store script keeps (see ``metrics.py``)."""
        return f"{self.prefix}:metrics"

    @property
    def workers(self) -> str:
        """Hash of the live workers' heartbeats: a JSON record per worker node name."""
        return f"{self.prefix}:workers"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which cancel requests are announced (message: the job id)."""
        return f"{self.prefix}:cancel"

    def idempotency(self, key: str) -> str:
        """Hash recording which job a client's ``Idempotency-Key`` created (key hashed:
        clients choose it, and it must not shape our key space)."""
        return f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    def queue(self, name: str) -> str:
        """The broker queue called ``name`` (a job type's ``queue``, else its type name)."""
        return f"{self.prefix}.{name}"

    @property
    def exchange(self) -> str:
        """Direct exchange every job message is published to, routed by queue name."""
        return f"{self.prefix}.jobs"

    @property
    def dead_letter_exchange(self) -> str:
        """Where queues send messages that no worker can take (garbage, unknown tasks)."""
        return f"{self.prefix}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def pattern(self) -> str:
        """Glob matching every key under this prefix (for tools and test clean-up)."""
        return f"{self.prefix}:*"
