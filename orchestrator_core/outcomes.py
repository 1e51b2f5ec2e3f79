"""How an attempt of ``execute`` ended, named the way the state machine records it.

The worker stores these outcomes; the testing kit for plugin authors asserts them,
so both classify through this one module.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.exceptions import JobCancelled, PermanentError, SerializationError
from orchestrator_core.job_type import JobType
from orchestrator_core.models import ErrorInfo
from orchestrator_core.records import to_json
from orchestrator_core.states import State

MAX_MESSAGE = 2000
"""Error messages are cut to this many characters."""


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: the state it leads to, with its result or error and a reason.

    ``RETRYING`` means "this attempt failed and may be retried"; whoever stores it
    turns it into ``FAILED`` when no attempt is left.
    """

    state: State
    result: Any = None
    error: ErrorInfo | None = None
    reason: str | None = None


def error_info(exc: BaseException, *, retryable: bool) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=str(exc)[:MAX_MESSAGE], retryable=retryable)


def failed(error_type: str, message: str) -> Outcome:
    """A failure that no retry can mend (bad payload, unserializable result, ...)."""
    error = ErrorInfo(type=error_type, message=message[:MAX_MESSAGE], retryable=False)
    return Outcome(State.FAILED, error=error, reason=error_type)


def timed_out(job_type: JobType) -> Outcome:
    error = ErrorInfo(
        type="Timeout",
        message="the attempt ran past its timeout"
        + (f" of {job_type.timeout:g} s" if job_type.timeout is not None else ""),
        retryable=True,
    )
    return Outcome(State.RETRYING, error=error, reason="timeout")


def classify(job_type: JobType, payload: Any, token: CancellationToken) -> Outcome:
    """Call ``execute(payload, token)`` (plain or async) and name its outcome (DESIGN section 3).

    A returned value is COMPLETED; ``PermanentError`` is FAILED; after the token fired,
    whatever execute raises is CANCELLED (cancel) or a timed-out attempt (timeout); any
    other exception is a failed attempt. The result is not checked here: see
    :func:`check_result`.
    """
    try:
        if job_type.is_async:
            value = asyncio.run(job_type.execute(payload, token))
        else:
            value = job_type.execute(payload, token)
    except PermanentError as exc:
        return Outcome(
            State.FAILED, error=error_info(exc, retryable=False), reason="permanent error"
        )
    except (Exception, SystemExit) as exc:
        # Once the token fired, whatever execute raises is how it stopped.
        if token.reason == "cancelled":
            return Outcome(State.CANCELLED, reason="cancelled")
        if token.reason == "timeout":
            return timed_out(job_type)
        if isinstance(exc, JobCancelled):
            exc = RuntimeError("execute raised JobCancelled although the job was not cancelled")
        return Outcome(
            State.RETRYING, error=error_info(exc, retryable=True), reason="attempt failed"
        )
    return Outcome(State.COMPLETED, result=value)


def check_result(outcome: Outcome) -> Outcome:
    """A COMPLETED outcome whose result cannot be stored as JSON becomes FAILED."""
    if outcome.state is not State.COMPLETED:
        return outcome
    try:
        to_json(outcome.result, what="result")
    except SerializationError as exc:
        return failed("ResultNotSerializable", str(exc))
    return outcome


def escalated(job_type: JobType, token: CancellationToken, grace: float) -> Outcome:
    """The outcome of an ``execute`` that ignored its fired token for ``grace`` seconds,
    which the worker stops by ending its process."""
    outcome = (
        timed_out(job_type)
        if token.reason == "timeout"
        else Outcome(State.CANCELLED, reason="cancelled")
    )
    ignored = f"execute ignored its token for {grace:g} s; the worker stopped it"
    return Outcome(outcome.state, error=outcome.error, reason=f"{outcome.reason}: {ignored}")


def as_stored(outcome: Outcome, *, attempt: int, max_attempts: int) -> Outcome:
    """A failed attempt with no attempt left is stored FAILED; anything else as it is."""
    if outcome.state is State.RETRYING and attempt >= max_attempts:
        reason = f"attempts exhausted: {outcome.reason}"
        return Outcome(State.FAILED, error=outcome.error, reason=reason)
    return outcome
