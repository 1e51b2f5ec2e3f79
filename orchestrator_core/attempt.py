"""One attempt of a job: from its stored payload to the outcome the state machine records.

The worker runs every attempt through :func:`perform` and stores what :func:`settle`
makes of it; the testing kit for plugin authors runs the same two functions, so the
state a plugin's test asserts is the state a worker would store::

    stored payload -> validate -> execute(payload, token) -> classify -> check the result
                   -> settle (a failed last attempt is FAILED; a retry waits its backoff)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.exceptions import JobCancelled, PermanentError, SerializationError
from orchestrator_core.job_type import JobType
from orchestrator_core.models import ErrorInfo
from orchestrator_core.states import State
from orchestrator_core.store.records import to_json

MAX_MESSAGE = 2000
"""Error messages are cut to this many characters."""


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: the state it leads to, with its result or error and a reason.

    ``RETRYING`` means "this attempt failed and may be retried"; :func:`settle` turns it
    into ``FAILED`` when no attempt is left.
    """

    state: State
    result: Any = None
    error: ErrorInfo | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Settled:
    """An outcome as it is stored, and for a retry how long its backoff is."""

    outcome: Outcome
    retry_in: float | None = None
    """Seconds until the next attempt is published; None unless the outcome is RETRYING."""


def perform(
    job_type: JobType,
    payload: Mapping[str, Any],
    token: CancellationToken,
    *,
    watch: AbstractContextManager[object] | None = None,
) -> Outcome:
    """Run one attempt of ``job_type`` on the stored ``payload`` and name its outcome.

    The payload is validated against the type's model again (a payload that no longer
    validates is FAILED, not retried), ``execute`` runs inside ``watch`` (the worker's
    supervision of the lease, the timeout and the token), its ending is classified
    (:func:`classify`) and a result that cannot be stored as JSON is FAILED.
    """
    try:
        model = job_type.validate_payload(payload)
    except ValidationError as exc:
        return failed("PayloadInvalid", validation_message(exc))
    with watch if watch is not None else nullcontext():
        outcome = classify(job_type, model, token)
    return check_result(outcome)


def settle(
    outcome: Outcome, job_type: JobType | None, *, attempt: int, max_attempts: int
) -> Settled:
    """The outcome to store for ``attempt`` of ``max_attempts``: a failed attempt with no
    attempt left is FAILED; one with attempts left waits the type's backoff first.

    :param job_type: None when the type is not installed here (nothing can be retried).
    """
    if outcome.state is State.RETRYING and (job_type is None or attempt >= max_attempts):
        reason = f"attempts exhausted: {outcome.reason}"
        return Settled(Outcome(State.FAILED, error=outcome.error, reason=reason))
    if outcome.state is State.RETRYING and job_type is not None:
        return Settled(outcome, retry_in=job_type.retry_delay(attempt))
    return Settled(outcome)


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


def validation_message(exc: ValidationError) -> str:
    """``exc`` as pydantic words it, without the input values: the job document shows the
    message, and the input may be a secret field's real value."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    lines = [f"{exc.error_count()} validation error(s) for {exc.title}"]
    lines += [f"{'.'.join(map(str, e['loc'])) or '(payload)'}: {e['msg']}" for e in errors]
    return "\n".join(lines)


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
