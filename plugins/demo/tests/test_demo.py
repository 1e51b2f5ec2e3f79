"""The demo job types, run in-process with a real CancellationToken (no Redis, no broker)."""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import pytest
from orchestrator_demo.plugin import register_job_types
from pydantic import ValidationError

from orchestrator_core import (
    CancellationToken,
    JobCancelled,
    JobType,
    PermanentError,
    load_plugins,
)

NAMES = {"demo.echo", "demo.sleep", "demo.fail"}


def job_type(name: str) -> JobType:
    return {t.name: t for t in register_job_types()}[name]


def run(name: str, data: dict[str, Any], token: CancellationToken | None = None) -> Any:
    """Validate ``data`` and run one attempt, as the worker does."""
    jt = job_type(name)
    return jt.execute(jt.validate_payload(data), token or CancellationToken("job-1", 1))


def test_echo_returns_its_input() -> None:
    data = {"n": 1, "nested": {"list": [1, "two", None]}}
    assert run("demo.echo", {"message": "hello", "data": data}) == {
        "message": "hello",
        "data": data,
    }
    assert run("demo.echo", {"message": ""}) == {"message": "", "data": None}


def test_sleep_completes_and_reports_progress_after_each_step() -> None:
    seen: list[tuple[float | None, str | None]] = []
    token = CancellationToken("job-1", 1, on_progress=lambda f, m: seen.append((f, m)))

    assert run("demo.sleep", {"seconds": 0.05, "steps": 4}, token) == {"slept": 0.05}

    assert [f for f, _ in seen] == [0.25, 0.5, 0.75, 1.0]
    assert seen[-1] == (1.0, "step 4/4")
    assert not token.cancelled


def test_sleep_of_zero_seconds_still_reports_every_step() -> None:
    token = CancellationToken("job-1", 1)
    assert run("demo.sleep", {"seconds": 0}, token) == {"slept": 0.0}
    assert token.progress is not None
    assert token.progress.fraction == 1.0
    assert token.progress.message == "step 10/10"


def test_sleep_stops_promptly_when_cancelled_from_another_thread() -> None:
    token = CancellationToken("job-1", 1)
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(JobCancelled) as caught:
            run("demo.sleep", {"seconds": 5, "steps": 2}, token)
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        timer.join()
    assert caught.value.reason == "cancelled"
    # A generous bound: a missed wake-up would take the whole 2.5 s slice.
    assert elapsed < 1.0
    assert token.progress is None


def test_sleep_reports_a_timeout_as_its_reason() -> None:
    token = CancellationToken("job-1", 1)
    token.cancel("timeout")
    with pytest.raises(JobCancelled) as caught:
        run("demo.sleep", {"seconds": 5}, token)
    assert caught.value.reason == "timeout"


def test_fail_fails_the_first_attempts_then_succeeds() -> None:
    payload = {"times": 2}
    for attempt in (1, 2):
        with pytest.raises(RuntimeError, match=rf"^planned failure {attempt}/2$"):
            run("demo.fail", payload, CancellationToken("job-1", attempt))
    assert run("demo.fail", payload, CancellationToken("job-1", 3)) == {"succeeded_on_attempt": 3}
    assert run("demo.fail", {"times": 0}, CancellationToken("job-1", 1)) == {
        "succeeded_on_attempt": 1
    }


def test_fail_uses_the_given_message() -> None:
    with pytest.raises(RuntimeError, match=r"^boom 1/1$"):
        run("demo.fail", {"times": 1, "message": "boom"})


@pytest.mark.parametrize("attempt", [1, 3])
def test_fail_permanent_raises_permanent_error_on_any_attempt(attempt: int) -> None:
    payload = {"times": 1, "permanent": True, "message": "no way"}
    with pytest.raises(PermanentError, match=r"^no way$"):
        run("demo.fail", payload, CancellationToken("job-1", attempt))


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
def test_payload_validation_rejects_bad_input(name: str, data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        job_type(name).validate_payload(data)


def test_limits_and_descriptions() -> None:
    echo, sleep, fail = (job_type(n) for n in ("demo.echo", "demo.sleep", "demo.fail"))
    assert echo.max_attempts == 1
    assert (sleep.max_attempts, sleep.timeout) == (3, None)
    assert (fail.max_attempts, fail.retry_backoff, fail.retry_backoff_max) == (5, 0.2, 2.0)
    for jt in (echo, sleep, fail):
        assert jt.description
        assert jt.description == inspect.getdoc(jt.execute)


def test_the_entry_point_is_discovered_from_the_installed_distribution() -> None:
    plugins = load_plugins(allow=["demo"])

    assert plugins.report.failed == (), (
        "install the plugin first: pip install -e plugins/demo",
        plugins.report.failed,
    )
    assert set(plugins.job_types) == NAMES
    for registered in plugins.job_types.values():
        assert registered.plugin.distribution == "orchestrator-demo"
        assert registered.plugin.value == "orchestrator_demo.plugin"
