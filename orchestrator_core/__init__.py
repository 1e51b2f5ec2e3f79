"""The orchestrator's shared core: the plugin contract, the state machine and the Redis store.

Plugin authors import everything they need from here::

    from orchestrator_core import CancellationToken, JobType, PermanentError, hookimpl

The modules at this level are the contract (``hookspecs``, ``job_type``,
``cancellation``, ``exceptions``, ``models``, ``states``), the settings, plugin loading
(``plugins``), the one attempt pipeline (``attempt``), the guard on where outgoing
requests may connect (``addresses``) and the plugin author's testing kit (``testing``).
Below them: ``store/`` (Redis, the one writer of state), ``dispatch/`` (the broker:
publishing, submission, the sweep) and ``telemetry/`` (events, metrics, heartbeats).
Neither service is imported from here.
"""

from orchestrator_core.addresses import AddressPolicy, GuardedTransport, Resolver, resolve_host
from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.exceptions import (
    AddressRefusedError,
    ApiError,
    AttemptsExhaustedError,
    BodyTooLargeError,
    BrokerUnavailableError,
    ConfigurationError,
    CorruptJobError,
    DuplicateJobTypeError,
    IdempotencyConflictError,
    IllegalTransitionError,
    InvalidBatchError,
    InvalidJobTypeError,
    InvalidQueryError,
    JobCancelled,
    JobError,
    JobExistsError,
    JobNotFoundError,
    LeaseActiveError,
    OrchestratorError,
    PermanentError,
    PluginError,
    SealedPayloadError,
    SerializationError,
    StaleLeaseError,
    StoreUnavailableError,
    UnknownJobTypeError,
    WaitTimeoutError,
)
from orchestrator_core.hookspecs import hookimpl, hookspec
from orchestrator_core.job_type import JobType
from orchestrator_core.models import ErrorInfo, HistoryEntry, Job, Progress
from orchestrator_core.plugins import LoadReport, PluginFailure, PluginInfo, Plugins, load_plugins
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.states import (
    CANCELLABLE_STATES,
    STARTABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    State,
)

__all__ = [
    "CANCELLABLE_STATES",
    "STARTABLE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AddressPolicy",
    "AddressRefusedError",
    "ApiError",
    "AttemptsExhaustedError",
    "BodyTooLargeError",
    "BrokerUnavailableError",
    "CancellationToken",
    "ConfigurationError",
    "CorruptJobError",
    "DuplicateJobTypeError",
    "ErrorInfo",
    "GuardedTransport",
    "HistoryEntry",
    "IdempotencyConflictError",
    "IllegalTransitionError",
    "InvalidBatchError",
    "InvalidJobTypeError",
    "InvalidQueryError",
    "Job",
    "JobCancelled",
    "JobError",
    "JobExistsError",
    "JobNotFoundError",
    "JobType",
    "LeaseActiveError",
    "LoadReport",
    "OrchestratorError",
    "PermanentError",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "Plugins",
    "Progress",
    "Resolver",
    "SealedPayloadError",
    "SerializationError",
    "Settings",
    "StaleLeaseError",
    "State",
    "StoreUnavailableError",
    "UnknownJobTypeError",
    "WaitTimeoutError",
    "hookimpl",
    "hookspec",
    "load_plugins",
    "load_settings",
    "resolve_host",
]
