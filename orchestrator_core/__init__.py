"""The orchestrator's shared core: the plugin contract, the state machine and the Redis store.

Plugin authors import everything they need from here::

    from orchestrator_core import CancellationToken, JobType, PermanentError, hookimpl
"""

from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.exceptions import (
    AttemptsExhaustedError,
    BrokerUnavailableError,
    ConfigurationError,
    CorruptJobError,
    DuplicateJobTypeError,
    IdempotencyConflictError,
    IllegalTransitionError,
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
    SerializationError,
    StaleLeaseError,
    StoreUnavailableError,
    UnknownJobTypeError,
)
from orchestrator_core.hookspecs import hookimpl, hookspec
from orchestrator_core.job_type import JobType
from orchestrator_core.models import ErrorInfo, HistoryEntry, Job, Progress
from orchestrator_core.plugins import LoadReport, PluginFailure, PluginInfo, Plugins, load_plugins
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.states import TERMINAL_STATES, TRANSITIONS, State

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AttemptsExhaustedError",
    "BrokerUnavailableError",
    "CancellationToken",
    "ConfigurationError",
    "CorruptJobError",
    "DuplicateJobTypeError",
    "ErrorInfo",
    "HistoryEntry",
    "IdempotencyConflictError",
    "IllegalTransitionError",
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
    "SerializationError",
    "Settings",
    "StaleLeaseError",
    "State",
    "StoreUnavailableError",
    "UnknownJobTypeError",
    "hookimpl",
    "hookspec",
    "load_plugins",
    "load_settings",
]
