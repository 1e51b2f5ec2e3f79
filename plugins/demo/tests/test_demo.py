"""The demo job types, run in-process by the testing kit as a worker would (no Redis, no broker)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from orchestrator_demo import plugin
from pydantic import ValidationError

from orchestrator_core import JobCancelled, JobType, PermanentError
from orchestrator_core.testing import JobRunner, check_distribution

DISTRIBUTION = "orchestrator-demo"


@pytest.fixture(scope="module")
def demo() -> dict[str, JobType]:
    """The demo's job types by name, as the installed distribution registers them."""
    return {job_type.name: job_type for job_type in check_distribution(DISTRIBUTION)}


def test_echo_returns_its_input(job_runner: JobRunner, demo: dict[str, JobType]) -> None:
    data = {"n": 1, "nested": {"list": [1, "two", None]}}
    job_runner.run(demo["demo.echo"], {"message": "hello", "data": data}).assert_completed(
        result={"message": "hello", "data": data}
    )
    job_runner.run(demo["demo.echo"], {"message": ""}).assert_completed(
        result={"message": "", "data": None}
    )


def test_sleep_completes_and_reports_progress_after_each_step(
    job_runner: JobRunner, demo: dict[str, JobType]
) -> None:
    run = job_runner.run(demo["demo.sleep"], {"seconds": 0.05, "steps": 4})

    run.assert_completed(result={"slept": 0.05})
    assert [p.fraction for p in run.progress] == [0.25, 0.5, 0.75, 1.0]
    assert (run.progress[-1].fraction, run.progress[-1].message) == (1.0, "step 4/4")
    assert run.token_reason is None


def test_sleep_of_zero_seconds_still_reports_every_step(
    job_runner: JobRunner, demo: dict[str, JobType]
) -> None:
    run = job_runner.run(demo["demo.sleep"], {"seconds": 0})

    run.assert_completed(result={"slept": 0.0})
    assert (run.progress[-1].fraction, run.progress[-1].message) == (1.0, "step 10/10")


def test_sleep_stops_promptly_when_cancelled(
    job_runner: JobRunner, demo: dict[str, JobType]
) -> None:
    run = job_runner.run(demo["demo.sleep"], {"seconds": 5, "steps": 2}, cancel_after=0.05)

    run.assert_cancelled()
    assert isinstance(run.exception, JobCancelled)
    assert run.exception.reason == "cancelled"
    # A generous bound: a missed wake-up would take the whole 2.5 s slice.
    assert run.duration < 1.0
    assert run.progress == []


def test_sleep_reports_a_timeout_as_its_reason(
    job_runner: JobRunner, demo: dict[str, JobType]
) -> None:
    run = job_runner.run(demo["demo.sleep"], {"seconds": 5}, timeout=0.05)

    run.assert_timed_out()
    assert isinstance(run.exception, JobCancelled)
    assert run.exception.reason == "timeout"


def test_fail_fails_the_first_attempts_then_succeeds(
    job_runner: JobRunner, demo: dict[str, JobType]
) -> None:
    fail, payload = demo["demo.fail"], {"times": 2}
    for attempt in (1, 2):
        error = job_runner.run(fail, payload, attempt=attempt).assert_retried(RuntimeError)
        assert error.message == f"planned failure {attempt}/2"
    job_runner.run(fail, payload, attempt=3).assert_completed(result={"succeeded_on_attempt": 3})
    job_runner.run(fail, {"times": 0}).assert_completed(result={"succeeded_on_attempt": 1})


def test_fail_uses_the_given_message(job_runner: JobRunner, demo: dict[str, JobType]) -> None:
    run = job_runner.run(demo["demo.fail"], {"times": 1, "message": "boom"})

    error = run.assert_retried(error_type=RuntimeError)
    assert error.message == "boom 1/1"


@pytest.mark.parametrize("attempt", [1, 3])
def test_fail_permanent_fails_for_good_on_any_attempt(
    job_runner: JobRunner, demo: dict[str, JobType], attempt: int
) -> None:
    payload = {"times": 1, "permanent": True, "message": "no way"}
    run = job_runner.run(demo["demo.fail"], payload, attempt=attempt)

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert error.message == "no way"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("demo.echo", {}),
        ("demo.echo", {"message": "x" * 10_001}),
        ("demo.echo", {"message": "hi", "data": [1, 2]}),
        ("demo.sleep", {"seconds": -1}),
        ("demo.sleep", {"seconds": 3601}),
        ("demo.sleep", {"seconds": float("nan")}),
        ("demo.sleep", {"seconds": 1, "steps": 0}),
        ("demo.fail", {"times": 101}),
        ("demo.fail", {"times": -1}),
        ("demo.fail", {"times": 1, "permanant": True}),
    ],
)
def test_payload_validation_rejects_bad_input(
    job_runner: JobRunner, demo: dict[str, JobType], name: str, data: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        job_runner.run(demo[name], data)


def test_limits_and_descriptions(demo: dict[str, JobType]) -> None:
    echo, sleep, fail = (demo[n] for n in ("demo.echo", "demo.sleep", "demo.fail"))
    assert echo.max_attempts == 1
    assert (sleep.max_attempts, sleep.timeout) == (3, None)
    assert (fail.max_attempts, fail.retry_backoff, fail.retry_backoff_max) == (5, 0.2, 2.0)
    for jt in (echo, sleep, fail):
        assert jt.description
        assert jt.description == inspect.getdoc(jt.execute)


def test_the_distribution_registers_the_three_types_of_its_plugin_module() -> None:
    found = {job_type.name: job_type.execute for job_type in check_distribution(DISTRIBUTION)}
    assert found == {"demo.echo": plugin.echo, "demo.fail": plugin.fail, "demo.sleep": plugin.sleep}
