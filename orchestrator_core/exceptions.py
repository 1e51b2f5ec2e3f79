"""The one exception tree of the orchestrator.

Every error the project raises on purpose derives from :class:`OrchestratorError`,
so callers can catch the whole family in one place (the API maps these classes to
HTTP statuses in a single handler). Plugin authors raise two of them on purpose:
:class:`PermanentError` and, through the token, :class:`JobCancelled`.
"""

from __future__ import annotations

import functools
from typing import Any


class OrchestratorError(Exception):
    """Raised for any failure the orchestrator reports on purpose; the base of the tree."""


class ConfigurationError(OrchestratorError):
    """Raised when a setting is missing, malformed or contradicts another one."""


# --- Plugins -------------------------------------------------------------------


class PluginError(OrchestratorError):
    """Raised when a plugin cannot be loaded or what it registers is unusable.

    :ivar plugin: the entry-point name of the plugin.
    :ivar distribution: the distribution (package) that ships it, if known.
    """

    def __init__(self, message: str, *, plugin: str, distribution: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.distribution = distribution


class InvalidJobTypeError(OrchestratorError, ValueError):
    """Raised when a ``JobType`` is declared with a bad name, model, callable or limit."""


class DuplicateJobTypeError(PluginError):
    """Raised when two plugins register the same job-type name.

    :ivar job_type: the contested name.
    :ivar distributions: every distribution that claims it.
    """

    def __init__(self, job_type: str, *, plugin: str, distribution: str | None, other: str) -> None:
        super().__init__(
            f"job type {job_type!r} is registered by both {other!r} and {distribution!r}; "
            "uninstall one of the two distributions or ask its author to rename the type",
            plugin=plugin,
            distribution=distribution,
        )
        self.job_type = job_type
        self.distributions = (other, distribution)


class UnknownJobTypeError(OrchestratorError, LookupError):
    """Raised when a job names a type that no loaded plugin registers.

    :ivar job_type: the name asked for.
    :ivar known: the names that are registered.
    """

    def __init__(self, job_type: str, known: list[str]) -> None:
        super().__init__(
            f"unknown job type {job_type!r}; known types: {', '.join(known) or 'none'}"
        )
        self.job_type = job_type
        self.known = known


# --- Outcomes a plugin's execute() signals ---------------------------------------


class JobCancelled(OrchestratorError):  # noqa: N818 - name is part of the plugin contract
    """Raised inside ``execute`` (by ``token.raise_if_cancelled()``) once the job was cancelled.

    :ivar reason: ``"cancelled"`` for a cancel request, ``"timeout"`` when the
        job's timeout expired.
    """

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(f"job stopped: {reason}")
        self.reason = reason


class PermanentError(OrchestratorError):
    """Raised by a plugin's ``execute`` when retrying cannot help; the job ends FAILED at once."""


class AddressRefusedError(PermanentError):
    """Raised before connecting when a host resolves to an address that outgoing requests
    must not reach (loopback, private, link-local, metadata, ...) and no network of
    ``ORCHESTRATOR_HTTP_ALLOW_NETWORKS`` holds it; another attempt would resolve the same.

    :ivar host: the host that was asked for.
    :ivar address: the resolved address that was refused.
    :ivar reason: what kind of address it is ("a loopback address", ...).
    :ivar network: the smallest network that would allow it ("10.1.2.3/32").
    """

    def __init__(self, host: str, *, address: str, reason: str, network: str) -> None:
        where = host if host == address else f"{host} ({address})"
        super().__init__(
            f"refused to connect to {where}: it is {reason}; to allow it, add a network "
            f"holding it (such as {network}) to ORCHESTRATOR_HTTP_ALLOW_NETWORKS"
        )
        self.host = host
        self.address = address
        self.reason = reason
        self.network = network

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only arguments would otherwise be lost when pickled.
        return (
            functools.partial(
                AddressRefusedError,
                self.host,
                address=self.address,
                reason=self.reason,
                network=self.network,
            ),
            (),
        )


# --- Jobs and the store ----------------------------------------------------------


class JobError(OrchestratorError):
    """Raised for a failure that concerns one job.

    :ivar job_id: the id of that job.
    """

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotFoundError(JobError, LookupError):
    """Raised when no job with the given id exists (including ids that are not UUIDs)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}", job_id=job_id)


class JobExistsError(JobError):
    """Raised when a job is created with an id that is already taken."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with id {job_id!r} already exists", job_id=job_id)


class IdempotencyConflictError(JobError):
    """Raised when an idempotency key is reused for a request other than the one it was first
    used for; ``job_id`` is the job that the key already names."""

    def __init__(self, *, job_id: str) -> None:
        super().__init__(
            f"this Idempotency-Key was already used for another request (job {job_id}); "
            "use a new key for a new request",
            job_id=job_id,
        )


class IllegalTransitionError(JobError):
    """Raised when the state machine refuses a move (the job is not in a state that allows it).

    :ivar current: the state the job is actually in.
    :ivar requested: the state that was asked for.
    """

    def __init__(self, job_id: str, *, current: str, requested: str, detail: str = "") -> None:
        message = f"job {job_id} cannot go from {current} to {requested}"
        super().__init__(f"{message}: {detail}" if detail else message, job_id=job_id)
        self.current = current
        self.requested = requested


class StaleLeaseError(JobError):
    """Raised when a caller acts on a job under a lease it no longer holds (fencing).

    A worker that stalled past its lease while another took the job over gets this
    instead of overwriting the newer attempt's state.

    :ivar owner: the lease the caller presented.
    :ivar holder: the lease currently recorded on the job (``None`` if none).
    :ivar state: the job's state now, where the store said it (``None`` otherwise).
    """

    def __init__(
        self, job_id: str, *, owner: str | None, holder: str | None, state: str | None = None
    ) -> None:
        super().__init__(
            f"job {job_id}: lease {owner!r} is not the current lease ({holder!r})", job_id=job_id
        )
        self.owner = owner
        self.holder = holder
        self.state = state


class LeaseActiveError(JobError):
    """Raised when a takeover is asked for while the job's current lease is still alive."""

    def __init__(self, job_id: str, *, holder: str | None, remaining_ms: int) -> None:
        super().__init__(
            f"job {job_id} is still leased by {holder!r} for {remaining_ms} ms", job_id=job_id
        )
        self.holder = holder
        self.remaining_ms = remaining_ms


class AttemptsExhaustedError(JobError):
    """Raised when a job would start an attempt beyond its ``max_attempts``."""

    def __init__(self, job_id: str, *, attempts: int, max_attempts: int) -> None:
        super().__init__(
            f"job {job_id} has used {attempts} of {max_attempts} attempts", job_id=job_id
        )
        self.attempts = attempts
        self.max_attempts = max_attempts


class CorruptJobError(JobError):
    """Raised when a stored job document cannot be decoded (a field is missing or malformed)."""


class SealedPayloadError(JobError):
    """Raised when a worker cannot open the sealed copy of a job's payload (the real values
    of its secret fields): it is encrypted and ``ORCHESTRATOR_PAYLOAD_KEY`` is unset here,
    none of its keys decrypts it, or the job has no sealed copy. The job fails rather than
    run with masked values."""


class ScheduleNotFoundError(OrchestratorError, LookupError):
    """Raised when no cron schedule has the given name.

    :ivar name: the name asked for.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class ScheduleExistsError(OrchestratorError):
    """Raised when a cron schedule is created with a name that is already taken.

    :ivar name: the contested name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} already exists")
        self.name = name


class SerializationError(OrchestratorError, ValueError):
    """Raised when a payload or a result cannot be stored as JSON."""


class InvalidQueryError(OrchestratorError, ValueError):
    """Raised when a listing is asked for with a bad state name, limit or cursor."""


class StoreUnavailableError(OrchestratorError):
    """Raised when Redis cannot be reached or does not answer within the configured timeouts.

    For a write, the outcome is unknown: the command may or may not have been applied,
    so a caller re-reads the job before deciding anything.
    """


class BrokerUnavailableError(OrchestratorError):
    """Raised when the broker cannot be reached or does not confirm a publish in time.

    The message may or may not have been queued; the job stays in the outbox, so the
    sweep publishes it again and the worker drops any duplicate.
    """


# --- The REST API and its clients ------------------------------------------------


class BodyTooLargeError(OrchestratorError):
    """Raised while reading a request body that runs over the configured limit.

    :ivar limit: the limit in bytes (``ORCHESTRATOR_MAX_BODY_BYTES``).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit} bytes")
        self.limit = limit


class TooManyStreamsError(OrchestratorError):
    """Raised when an event stream is asked for past the cap of its API key (or client
    address) or of the API process; it may be asked for again once another one ends.

    :ivar limit: the cap that was reached.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class InvalidBatchError(OrchestratorError, ValueError):
    """Raised for a batch of submissions with any invalid item; none of it is submitted.

    :ivar detail: every error of every item, each ``{"loc", "msg", "type"}`` with the
        item's index in its path.
    """

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(detail)} error(s) in the batch; nothing was submitted")
        self.detail = detail


class ApiError(OrchestratorError):
    """Raised by the client when the API answers with an error status, or cannot be reached.

    :ivar status: the HTTP status, or ``None`` when no answer came (refused, timed out).
    :ivar detail: the ``detail`` of the error body (a string, or a list of validation
        errors for a 422), the start of the body when it was not the API's JSON, or
        ``None`` when no answer came.
    """

    def __init__(self, message: str, *, status: int | None, detail: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class WaitTimeoutError(OrchestratorError, TimeoutError):
    """Raised when the client's ``wait`` gives up before the job reached a terminal state.

    :ivar job_id: the job waited for.
    :ivar job: its document as last read.
    """

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        super().__init__(
            f"job {job.get('id')} is still {job.get('state')} after {timeout:g} s; "
            "it keeps running, stopping the wait does not cancel it"
        )
        self.job_id = str(job.get("id"))
        self.job = job
