"""Every Redis key and broker name the orchestrator uses, all under the configured prefix.

The keys of one job share the hash tag ``{<job id>}`` so they land in one Redis
Cluster slot. The listing indexes are sorted sets scored by a creation sequence
number, which never changes, so a cursor is just that number.
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
        """The job's history as a list, as an earlier layout kept it; the store script
        moves it into the job hash the first time it writes the job."""
        return f"{self.prefix}:job:{{{job_id}}}:history"

    @property
    def job_stem(self) -> str:
        """What every job hash's key starts with; the job id in braces follows."""
        return f"{self.prefix}:job:"

    @property
    def sequence(self) -> str:
        """Counter giving each new job its listing position."""
        return f"{self.prefix}:seq"

    @property
    def leases(self) -> str:
        """Sorted set of running job ids scored by lease expiry (ms): the sweep finds lost
        jobs in it, and listings and counts find the running jobs."""
        return f"{self.prefix}:leases"

    @property
    def retries(self) -> str:
        """Sorted set of retrying job ids scored by when their next attempt is due (ms)."""
        return f"{self.prefix}:retries"

    @property
    def outbox(self) -> str:
        """Sorted set of new job ids scored by when the sweep publishes them (ms), unless
        the confirm of their first message takes them off first."""
        return f"{self.prefix}:outbox"

    @property
    def legacy_dispatch(self) -> str:
        """The one schedule of outbox and retries an earlier layout kept; the sweep still
        publishes what is left in it, so an upgrade loses no job."""
        return f"{self.prefix}:dispatch"

    @property
    def expiries(self) -> str:
        """Sorted set of finished job ids scored by when the sweep deletes them (ms): their
        ``finished_at`` plus the retention in effect when they finished."""
        return f"{self.prefix}:expiries"

    @property
    def expiry_walk(self) -> str:
        """Hash of the sweep's one walk over the job hashes (SCAN cursor, and ``done``),
        which gives each job that finished without an expiry entry (under an earlier
        layout, or with retention off) its entry."""
        return f"{self.prefix}:expiries:walk"

    @property
    def deferred(self) -> str:
        """Sorted set of jobs in CREATED or RETRYING by when they may start (ms): those
        with a ``not_before`` not reached yet, those whose rate limit gave them a later
        start, those a freed slot or an unpause woke. The sweep publishes them as they
        fall due."""
        return f"{self.prefix}:deferred"

    @property
    def flow(self) -> str:
        """Hash of the flow control's shared state (``store/lua/flow.lua``): per type,
        ``o|<type>`` the operator's override (JSON), ``t|<type>`` set while its running
        jobs are counted, ``r|<type>`` its rate limit's next start (ms), and
        ``w|<type>|<reason>`` how many of its jobs wait for that reason."""
        return f"{self.prefix}:flow"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel on which the store announces that a deferred job falls due
        sooner than the sweep would look (message: the instant, ms)."""
        return f"{self.prefix}:wake"

    def slots(self, job_type: str, key: str | None = None) -> str:
        """Set of the running jobs of ``job_type`` (of one ``concurrency_key``) that hold
        a slot of its concurrency limits."""
        return self._flow_name("slots", job_type, key)

    def waiters(self, job_type: str, key: str | None = None) -> str:
        """Sorted set of the jobs waiting for a slot of ``job_type``'s limit (of the
        per-key limit of ``key``), best first: by priority, then by age."""
        return self._flow_name("waiters", job_type, key)

    def paused_jobs(self, job_type: str) -> str:
        """Sorted set of the jobs of ``job_type`` that wait for it to be unpaused."""
        return self._flow_name("paused", job_type, None)

    def _flow_name(self, kind: str, job_type: str, key: str | None) -> str:
        name = f"{self.prefix}:flow:{kind}:{job_type}"
        # Hashed: clients choose the key, and it must not shape our key space.
        return name if key is None else f"{name}:{hashlib.sha1(key.encode()).hexdigest()}"

    @property
    def schedules(self) -> str:
        """Hash of the cron schedules: one JSON record per schedule name."""
        return f"{self.prefix}:schedules"

    @property
    def index_type_base(self) -> str:
        """Stem of the per-type indexes; ``<type>:<state>`` is appended (every state but
        RUNNING, whose jobs are those of the lease index)."""
        return f"{self.prefix}:idx:type:"

    def index_type_state(self, job_type: str, state: State) -> str:
        """Sorted set of the jobs of ``job_type`` in ``state``, scored by creation
        sequence; never for RUNNING (see :attr:`leases`)."""
        if state is State.RUNNING:
            raise ValueError("running jobs are indexed by their lease, not by state")
        return f"{self.index_type_base}{job_type}:{state.value}"

    @property
    def job_types(self) -> str:
        """Set of every job type the metrics fold has seen."""
        return f"{self.prefix}:types"

    @property
    def events(self) -> str:
        """Stream with one entry per persisted transition, oldest first, length-capped."""
        return f"{self.prefix}:events"

    @property
    def metrics(self) -> str:
        """Hash of the job counters and histograms folded from the event stream, and the
        fold's cursor (see ``telemetry/metrics.py``)."""
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
