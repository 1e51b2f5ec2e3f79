"""Outcome classification, shared by the worker and the plugin authors' testing kit."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from orchestrator_core import CancellationToken, JobCancelled, JobType, PermanentError, State
from orchestrator_core.attempt import Outcome, check_result, classify


class Empty(BaseModel):
    pass


def job_type(execute: object, **options: object) -> JobType:
    return JobType(name="t.outcome", payload=Empty, execute=execute, **options)  # type: ignore[arg-type]


def returns(payload: Empty, token: CancellationToken) -> dict[str, int]:
    """Returns."""
    return {"ok": 1}


def raises_value_error(payload: Empty, token: CancellationToken) -> None:
    """Fails."""
    raise ValueError("nope")


def raises_permanent(payload: Empty, token: CancellationToken) -> None:
    """Fails for good."""
    raise PermanentError("never")


def honours_token(payload: Empty, token: CancellationToken) -> None:
    """Stops when told."""
    token.wait(10)
    token.raise_if_cancelled()


def raises_job_cancelled(payload: Empty, token: CancellationToken) -> None:
    """Claims a cancel that never happened."""
    raise JobCancelled()


async def async_returns(payload: Empty, token: CancellationToken) -> str:
    """Returns from a coroutine."""
    await asyncio.sleep(0)
    return "async"


def test_each_outcome_is_named_as_the_state_machine_records_it() -> None:
    token = CancellationToken("j", 1)
    assert classify(job_type(returns), Empty(), token) == Outcome(State.COMPLETED, {"ok": 1})
    assert classify(job_type(async_returns), Empty(), token).result == "async"
    failed = classify(job_type(raises_value_error), Empty(), token)
    assert (failed.state, failed.error and failed.error.retryable) == (State.RETRYING, True)
    permanent = classify(job_type(raises_permanent), Empty(), token)
    assert permanent.state is State.FAILED
    assert permanent.error is not None
    assert (permanent.error.type, permanent.error.retryable) == ("PermanentError", False)
    bogus = classify(job_type(raises_job_cancelled), Empty(), token)
    assert bogus.state is State.RETRYING, "JobCancelled without a cancel is a plain failure"


@pytest.mark.parametrize(
    ("reason", "state"), [("cancelled", State.CANCELLED), ("timeout", State.RETRYING)]
)
def test_a_fired_token_decides_how_execute_stopped(reason: str, state: State) -> None:
    token = CancellationToken("j", 1)
    token.cancel(reason)
    outcome = classify(job_type(honours_token, timeout=1), Empty(), token)
    assert outcome.state is state
    if reason == "timeout":
        assert outcome.error is not None
        assert outcome.error.type == "Timeout"


def test_an_unserializable_result_fails() -> None:
    outcome = check_result(Outcome(State.COMPLETED, result={1, 2}))
    assert outcome.state is State.FAILED
    assert outcome.error is not None
    assert outcome.error.type == "ResultNotSerializable"
    assert check_result(Outcome(State.COMPLETED, result=[1, 2])).state is State.COMPLETED
