"""The one attempt pipeline, shared by the worker and the plugin authors' testing kit."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pydantic import BaseModel, Field

from orchestrator_core import CancellationToken, JobCancelled, JobType, PermanentError, State
from orchestrator_core.attempt import Outcome, check_result, classify, perform, settle


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


class Count(BaseModel):
    to: int = Field(gt=0)


def counts(payload: Count, token: CancellationToken) -> dict[str, int]:
    """Counts."""
    return {"counted": payload.to}


def returns_a_set(payload: Count, token: CancellationToken) -> set[int]:
    """Returns what JSON cannot hold."""
    return {payload.to}


def test_perform_validates_the_stored_payload_executes_and_checks_the_result() -> None:
    count = JobType(name="t.count", payload=Count, execute=counts)
    token = CancellationToken("j", 1)
    assert perform(count, {"to": 3}, token) == Outcome(State.COMPLETED, {"counted": 3})
    invalid = perform(count, {"to": -1}, token)
    assert (invalid.state, invalid.reason) == (State.FAILED, "PayloadInvalid")
    assert invalid.error is not None
    assert invalid.error.retryable is False
    unstorable = perform(
        JobType(name="t.set", payload=Count, execute=returns_a_set), {"to": 1}, token
    )
    assert unstorable.error is not None
    assert (unstorable.state, unstorable.error.type) == (State.FAILED, "ResultNotSerializable")


def test_perform_runs_only_execute_inside_the_watch() -> None:
    seen: list[str] = []

    def execute(payload: Count, token: CancellationToken) -> int:
        """Notes that it ran."""
        seen.append("execute")
        return payload.to

    @contextmanager
    def watch() -> Iterator[None]:
        seen.append("begin")
        yield
        seen.append("end")

    job = JobType(name="t.watched", payload=Count, execute=execute)
    assert perform(job, {"to": 2}, CancellationToken("j", 1), watch=watch()).result == 2
    assert seen == ["begin", "execute", "end"]
    seen.clear()
    # A payload that no longer validates never reaches execute, nor its watch.
    assert perform(job, {}, CancellationToken("j", 1), watch=watch()).state is State.FAILED
    assert seen == []


def test_settle_retries_with_the_types_backoff_until_the_last_attempt() -> None:
    failing = job_type(raises_value_error, max_attempts=3, retry_backoff=2, retry_jitter=False)
    outcome = classify(failing, Empty(), CancellationToken("j", 1))
    first = settle(outcome, failing, attempt=1, max_attempts=3)
    assert (first.outcome, first.retry_in) == (outcome, 2.0)
    assert settle(outcome, failing, attempt=2, max_attempts=3).retry_in == 4.0
    last = settle(outcome, failing, attempt=3, max_attempts=3)
    assert last.outcome.state is State.FAILED
    assert last.outcome.reason == "attempts exhausted: attempt failed"
    assert last.outcome.error == outcome.error
    assert last.retry_in is None


def test_settle_jitters_the_backoff_within_its_upper_half() -> None:
    failing = job_type(raises_value_error, max_attempts=5, retry_backoff=4)
    outcome = classify(failing, Empty(), CancellationToken("j", 1))
    random.seed(7)
    delays = {settle(outcome, failing, attempt=1, max_attempts=5).retry_in for _ in range(50)}
    assert all(d is not None and 2.0 <= d <= 4.0 for d in delays)
    assert len(delays) > 1


def test_settle_leaves_every_other_outcome_as_it_is() -> None:
    failing = job_type(raises_value_error)
    for outcome in (
        Outcome(State.COMPLETED, result=1),
        Outcome(State.CANCELLED, reason="cancelled"),
        Outcome(State.FAILED, reason="permanent error"),
    ):
        assert settle(outcome, failing, attempt=1, max_attempts=3).outcome == outcome


def test_without_its_type_a_failed_attempt_is_not_retried() -> None:
    outcome = Outcome(State.RETRYING, reason="attempt failed")
    settled = settle(outcome, None, attempt=1, max_attempts=3)
    assert (settled.outcome.state, settled.retry_in) == (State.FAILED, None)
