"""The plugin authors' testing kit: in-process runs named as the worker names them."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import orchestrator_core.testing
from orchestrator_core import CancellationToken, JobCancelled, JobType, PermanentError, State
from orchestrator_core.testing import JobRunner, check_distribution, run_job, start_job

FIXTURES = Path(__file__).parent / "fixtures"


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    steps: int = Field(default=2, ge=1)


class Reply(BaseModel):
    text: str
    at: tuple[int, int]


def greet(payload: Greeting, token: CancellationToken) -> dict[str, Any]:
    """Greets after reporting each step."""
    for step in range(1, payload.steps + 1):
        token.report_progress(step / payload.steps, f"step {step}")
    return {"hello": payload.name, "job_id": token.job_id, "attempt": token.attempt}


def reply(payload: Greeting, token: CancellationToken) -> Reply:
    """Returns a pydantic model holding a tuple."""
    return Reply(text=payload.name, at=(1, 2))


def sleeper(payload: Greeting, token: CancellationToken) -> str:
    """Sleeps cooperatively for a long time."""
    for _ in range(100):
        if token.wait(1):
            token.raise_if_cancelled()
    return "woke up"


async def async_sleeper(payload: Greeting, token: CancellationToken) -> str:
    """Sleeps cooperatively in a coroutine."""
    if await token.wait_async(30):
        token.raise_if_cancelled()
    await asyncio.sleep(0)
    return "woke up"


def broken(payload: Greeting, token: CancellationToken) -> None:
    """Fails every attempt."""
    raise ValueError(f"no greeting for {payload.name}")


def refuses(payload: Greeting, token: CancellationToken) -> None:
    """Fails for good."""
    raise PermanentError("never for " + payload.name)


def claims_cancel(payload: Greeting, token: CancellationToken) -> None:
    """Raises JobCancelled although nobody cancelled."""
    raise JobCancelled()


def unserializable(payload: Greeting, token: CancellationToken) -> object:
    """Returns something JSON cannot hold."""
    return {"when": object()}


def make(execute: Any, **options: Any) -> JobType:
    return JobType(name="kit.test", payload=Greeting, execute=execute, **options)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets an execute that ignores its token finish when the test is over."""
    event = threading.Event()
    yield event
    event.set()


def test_the_fixture_comes_from_the_pytest11_entry_point(
    request: pytest.FixtureRequest, job_runner: JobRunner
) -> None:
    # No conftest defines job_runner: pytest found it through the installed entry point.
    assert request.config.pluginmanager.get_plugin("orchestrator") is orchestrator_core.testing
    assert isinstance(job_runner, JobRunner)
    assert job_runner.runs == []


def test_a_completed_run_has_result_progress_and_token(job_runner: JobRunner) -> None:
    run = job_runner.run(make(greet), {"name": "ada", "steps": 4}, attempt=2)

    run.assert_completed(result={"hello": "ada", "job_id": run.job_id, "attempt": 2})
    assert run.state is State.COMPLETED
    assert run.job_id.startswith("test-")
    uuid.UUID(run.job_id.removeprefix("test-"))
    assert [(p.fraction, p.message) for p in run.progress] == [
        (0.25, "step 1"),
        (0.5, "step 2"),
        (0.75, "step 3"),
        (1.0, "step 4"),
    ]
    assert run.error is None
    assert run.ignored_token is False
    assert run.token_reason is None
    assert run.retry_in is None
    assert run.exception is None
    assert 0 <= run.duration < 5
    assert job_runner.runs == [run]


def test_the_result_is_compared_in_its_stored_json_form() -> None:
    run = run_job(make(reply), {"name": "ada"})
    run.assert_completed(result={"text": "ada", "at": [1, 2]})
    assert isinstance(run.outcome.result, Reply)


def test_a_model_instance_is_accepted_as_the_payload() -> None:
    run_job(make(greet), Greeting(name="bob", steps=1)).assert_completed()


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "x", "extra": 1}])
def test_an_invalid_payload_raises_as_the_api_rejects_it(payload: dict[str, Any]) -> None:
    calls: list[object] = []
    job_type = make(lambda p, t: calls.append(p))
    with pytest.raises(ValidationError):
        run_job(job_type, payload)
    assert calls == []


def test_a_payload_that_does_not_survive_storage_fails_as_on_the_worker() -> None:
    class Hidden(BaseModel):
        secret: str = Field(exclude=True)  # dropped when stored, so the worker lacks it

    def execute(payload: Hidden, token: CancellationToken) -> None:
        """Never runs."""
        raise AssertionError("execute ran")

    job_type = JobType(name="kit.hidden", payload=Hidden, execute=execute)
    run = run_job(job_type, {"secret": "s"})
    run.assert_failed(error_type="PayloadInvalid", retryable=False)
    assert run.payload is None


def test_a_failed_attempt_is_retried_until_the_last_one() -> None:
    job_type = make(broken, max_attempts=3)

    first = run_job(job_type, {"name": "ada"})
    first.assert_retried(error_type=ValueError)
    first.assert_retried(error_type="ValueError")
    assert first.error is not None
    assert first.error.message == "no greeting for ada"
    assert isinstance(first.exception, ValueError)

    last = run_job(job_type, {"name": "ada"}, attempt=3)
    last.assert_failed(error_type=ValueError, retryable=True)
    assert last.outcome.reason == "attempts exhausted: attempt failed"


def test_a_permanent_error_fails_without_retry() -> None:
    run = run_job(make(refuses), {"name": "ada"})
    run.assert_failed(error_type=PermanentError, retryable=False)
    with pytest.raises(AssertionError, match="expected RETRYING"):
        run.assert_retried()


def test_job_cancelled_without_a_cancel_is_a_failed_attempt() -> None:
    run_job(make(claims_cancel), {"name": "ada"}).assert_retried(error_type=RuntimeError)


def test_an_unserializable_result_fails() -> None:
    run = run_job(make(unserializable), {"name": "ada"})
    run.assert_failed(error_type="ResultNotSerializable", retryable=False)
    assert run.result is None


def test_cancel_after_fires_the_token_with_reason_cancelled() -> None:
    run = run_job(make(sleeper), {"name": "ada"}, cancel_after=0.05)
    run.assert_cancelled()
    assert run.outcome.reason == "cancelled"
    assert not run.ignored_token
    # Generous: a token that never fired would take 100 s.
    assert 0.04 <= run.duration < 5


def test_cancel_reaches_an_async_execute() -> None:
    run_job(make(async_sleeper), {"name": "ada"}, cancel_after=0.05).assert_cancelled()


def test_timeout_fires_the_token_with_reason_timeout() -> None:
    run = run_job(make(sleeper, timeout=600), {"name": "ada"}, timeout=0.05)
    run.assert_timed_out()
    run.assert_retried(error_type="Timeout")
    assert run.error is not None
    # The message names the limit that applied, not the type's own 600 s.
    assert "0.05 s" in run.error.message
    assert "600" not in run.error.message
    with pytest.raises(AssertionError, match="expected CANCELLED"):
        run.assert_cancelled()


def test_the_types_own_timeout_applies_by_default() -> None:
    run = run_job(make(sleeper, timeout=0.05, max_attempts=1), {"name": "ada"})
    run.assert_timed_out()
    run.assert_failed(error_type="Timeout", retryable=True)


def test_the_first_of_cancel_and_timeout_wins() -> None:
    run = run_job(make(sleeper), {"name": "ada"}, cancel_after=5, timeout=0.05)
    run.assert_timed_out()


def test_a_run_that_ends_before_the_cancel_is_completed() -> None:
    run = run_job(make(greet), {"name": "ada"}, cancel_after=5)
    run.assert_completed()
    with pytest.raises(AssertionError, match=r"expected CANCELLED, but\nkit\.test .* COMPLETED"):
        run.assert_cancelled()


def test_an_execute_that_ignores_its_token_is_reported(release: threading.Event) -> None:
    def stubborn(payload: Greeting, token: CancellationToken) -> str:
        """Ignores the token, as time.sleep would."""
        release.wait(10)
        return "done"

    started = time.monotonic()
    run = run_job(make(stubborn), {"name": "ada"}, cancel_after=0.05, grace=0.1)

    assert time.monotonic() - started < 5
    assert run.ignored_token is True
    assert run.state is State.CANCELLED
    assert run.outcome.reason == (
        "cancelled: execute ignored its token for 0.1 s; the worker stopped it"
    )
    with pytest.raises(AssertionError, match="ignored its fired token"):
        run.assert_cancelled()


def test_an_execute_that_ignores_a_timeout_is_reported(release: threading.Event) -> None:
    def stubborn(payload: Greeting, token: CancellationToken) -> str:
        """Ignores the token."""
        release.wait(10)
        return "done"

    run = run_job(make(stubborn), {"name": "ada"}, timeout=0.05, grace=0.05)
    assert run.ignored_token
    assert run.state is State.RETRYING
    assert run.error is not None
    assert run.error.type == "Timeout"
    with pytest.raises(AssertionError, match="ignored its fired token"):
        run.assert_timed_out()


def test_failure_messages_say_what_happened() -> None:
    run = run_job(make(broken), {"name": "ada"})
    with pytest.raises(AssertionError) as caught:
        run.assert_completed()
    message = str(caught.value)
    assert message.startswith("expected COMPLETED, but\nkit.test (attempt 1 of 3) ended RETRYING")
    assert "error: ValueError: no greeting for ada (retryable)" in message
    # The traceback points into the plugin's code.
    assert 'in broken\n        raise ValueError(f"no greeting for {payload.name}")' in message

    done = run_job(make(greet), {"name": "ada", "steps": 1})
    with pytest.raises(AssertionError) as caught:
        done.assert_completed(result={"hello": "bob"})
    assert "expected the result {'hello': 'bob'}" in str(caught.value)
    assert "but it is {'hello': 'ada'" in str(caught.value)
    assert "progress: 1 report(s), the last fraction=1.0 message='step 1'" in str(caught.value)

    wrong_type = "expected the error type 'KeyError', got 'ValueError'"
    with pytest.raises(AssertionError, match=wrong_type):
        run.assert_retried(error_type=KeyError)
    with pytest.raises(AssertionError, match="expected FAILED"):
        run.assert_failed()
    with pytest.raises(AssertionError, match="expected a timed-out attempt"):
        run.assert_timed_out()
    refused = run_job(make(refuses), {"name": "ada"})
    with pytest.raises(AssertionError, match="expected retryable=True, got retryable=False"):
        refused.assert_failed(retryable=True)


# --- job ids, attempts and backoff ----------------------------------------------


def test_job_id_is_the_tokens_job_id(job_runner: JobRunner) -> None:
    run = job_runner.run(make(greet), {"name": "ada", "steps": 1}, job_id="job-42")
    run.assert_completed(result={"hello": "ada", "job_id": "job-42", "attempt": 1})
    assert run.job_id == "job-42"

    running = job_runner.start(make(greet), {"name": "ada", "steps": 1}, job_id="job-43")
    assert (running.job_id, running.token.job_id) == ("job-43", "job-43")
    assert running.result().result["job_id"] == "job-43"


def test_retry_in_is_the_backoff_of_a_retried_attempt_and_none_otherwise() -> None:
    steady = make(
        broken, max_attempts=4, retry_backoff=2.0, retry_backoff_max=5.0, retry_jitter=False
    )
    assert [run_job(steady, {"name": "ada"}, attempt=n).retry_in for n in (1, 2, 3)] == [
        2.0,
        4.0,
        5.0,
    ]
    timed_out = run_job(make(sleeper, retry_jitter=False), {"name": "ada"}, timeout=0.05)
    timed_out.assert_retried(error_type="Timeout")
    assert timed_out.retry_in == 1.0
    jittered = run_job(make(broken, retry_backoff=2.0), {"name": "ada"}, attempt=2)
    assert jittered.retry_in is not None
    assert 2.0 <= jittered.retry_in <= 4.0

    not_retried = [
        run_job(steady, {"name": "ada"}, attempt=4),
        run_job(make(greet), {"name": "ada"}),
        run_job(make(refuses), {"name": "ada"}),
        run_job(make(sleeper), {"name": "ada"}, cancel_after=0.05),
    ]
    assert [run.state for run in not_retried] == [
        State.FAILED,
        State.COMPLETED,
        State.FAILED,
        State.CANCELLED,
    ]
    assert [run.retry_in for run in not_retried] == [None] * 4


def test_max_attempts_is_the_jobs_as_a_client_sets_it() -> None:
    job_type = make(broken)  # three attempts of its own

    once = run_job(job_type, {"name": "ada"}, max_attempts=1)
    once.assert_failed(error_type=ValueError, retryable=True)
    assert once.outcome.reason == "attempts exhausted: attempt failed"
    assert once.job_type.max_attempts == 1
    assert "kit.test (attempt 1 of 1) ended FAILED" in once.describe()

    fourth = run_job(job_type, {"name": "ada"}, attempt=4, max_attempts=5)
    fourth.assert_retried(error_type=ValueError)
    assert fourth.retry_in is not None
    run_job(job_type, {"name": "ada"}, attempt=5, max_attempts=5).assert_failed(ValueError)
    assert job_type.max_attempts == 3

    sixth = run_job(make(greet), {"name": "ada", "steps": 1}, attempt=6, max_attempts=10)
    sixth.assert_completed(result={"hello": "ada", "job_id": sixth.job_id, "attempt": 6})


# --- the token: cancel_after=0, start(), cancel() and token_reason ---------------


def test_cancel_after_zero_fires_the_token_before_execute_starts() -> None:
    seen: list[tuple[bool, str | None]] = []
    done: list[str] = []

    def careful(payload: Greeting, token: CancellationToken) -> str:
        """Looks at its token before doing anything."""
        seen.append((token.cancelled, token.reason))
        token.raise_if_cancelled()
        done.append("the work")
        return "worked"

    run = run_job(make(careful), {"name": "ada"}, cancel_after=0, timeout=5)

    run.assert_cancelled()
    assert seen == [(True, "cancelled")]
    assert done == []
    assert isinstance(run.exception, JobCancelled)
    assert run.token_reason == "cancelled"
    # A sleeper wakes at once instead of after its first second.
    assert run_job(make(sleeper), {"name": "ada"}, cancel_after=0).duration < 0.5


def test_a_started_run_is_cancelled_by_hand_once_execute_has_begun(
    job_runner: JobRunner,
) -> None:
    begun = threading.Event()
    received: list[CancellationToken] = []

    def waits(payload: Greeting, token: CancellationToken) -> str:
        """Says it has begun, then sleeps cooperatively."""
        received.append(token)
        begun.set()
        if token.wait(30):
            token.raise_if_cancelled()
        return "woke up"

    running = job_runner.start(make(waits), {"name": "ada"})
    assert begun.wait(5)
    assert not running.finished
    assert not running.token.cancelled
    running.cancel()
    run = running.result()

    run.assert_cancelled()
    assert run.outcome.reason == "cancelled"
    assert run.token_reason == "cancelled"
    assert len(received) == 1
    assert received[0] is running.token
    assert running.finished
    assert running.result() is run
    assert run.duration < 5


def test_cancel_with_reason_timeout_is_a_timed_out_attempt() -> None:
    running = start_job(make(sleeper), {"name": "ada"})
    running.cancel("timeout")
    run = running.result()
    run.assert_timed_out()
    assert run.token_reason == "timeout"


def test_the_grace_counts_from_the_cancel(release: threading.Event) -> None:
    def slow_to_stop(payload: Greeting, token: CancellationToken) -> str:
        """Takes a moment to clean up once its token fired."""
        token.wait(30)
        release.wait(0.05)
        token.raise_if_cancelled()
        return "never"

    running = start_job(make(slow_to_stop), {"name": "ada"}, grace=0.2)
    time.sleep(0.4)  # longer than the grace, before the token fires
    running.cancel()
    running.result().assert_cancelled()

    def stubborn(payload: Greeting, token: CancellationToken) -> str:
        """Ignores the token."""
        release.wait(10)
        return "done"

    running = start_job(make(stubborn), {"name": "ada"}, grace=0.2)
    time.sleep(0.4)
    fired = time.monotonic()
    running.cancel()
    run = running.result()
    assert 0.2 <= time.monotonic() - fired < 5
    assert run.ignored_token
    assert run.token_reason == "cancelled"


def test_runs_lists_started_runs_once_waited_for_in_the_order_started(
    job_runner: JobRunner,
) -> None:
    first = job_runner.start(make(greet), {"name": "first"})
    second = job_runner.start(make(greet), {"name": "second"})
    assert job_runner.runs == []

    later = second.result()
    assert job_runner.runs == [later]
    earlier = first.result()
    made = job_runner.run(make(greet), {"name": "third"})
    assert job_runner.runs == [earlier, later, made]
    assert first.result() is earlier
    assert job_runner.runs == [earlier, later, made]


def test_token_reason_says_whether_and_why_the_token_fired() -> None:
    assert run_job(make(greet), {"name": "ada"}).token_reason is None
    # The run ended before the cancel was due.
    assert run_job(make(greet), {"name": "ada"}, cancel_after=5).token_reason is None
    assert run_job(make(sleeper), {"name": "ada"}, cancel_after=0.05).token_reason == "cancelled"
    assert run_job(make(sleeper), {"name": "ada"}, timeout=0.05).token_reason == "timeout"

    def finishes_anyway(payload: Greeting, token: CancellationToken) -> str:
        """Returns when its token fires instead of raising."""
        token.wait(30)
        return "finished anyway"

    run = run_job(make(finishes_anyway), {"name": "ada"}, cancel_after=0.05)
    run.assert_completed(result="finished anyway")
    assert run.token_reason == "cancelled"


def test_a_cancel_after_execute_returned_is_not_the_runs_token_reason() -> None:
    returning = threading.Event()

    def quick(payload: Greeting, token: CancellationToken) -> str:
        """Returns at once."""
        returning.set()
        return "done"

    running = start_job(make(quick), {"name": "ada"})
    assert returning.wait(5)
    time.sleep(0.2)  # generous: perform has a few steps left once execute returned
    running.cancel()
    run = running.result()

    run.assert_completed(result="done")
    assert run.token_reason is None
    assert running.token.reason == "cancelled"


def test_the_assertions_return_what_they_checked() -> None:
    done = run_job(make(reply), {"name": "ada"})
    assert done.assert_completed() == {"text": "ada", "at": [1, 2]}
    assert done.assert_completed(result={"text": "ada", "at": [1, 2]})["at"] == [1, 2]

    retried = run_job(make(broken), {"name": "ada"})
    assert retried.assert_retried(error_type=ValueError) is retried.error
    refused = run_job(make(refuses), {"name": "ada"})
    assert refused.assert_failed(error_type=PermanentError).message == "never for ada"
    timed_out = run_job(make(sleeper), {"name": "ada"}, timeout=0.05)
    assert timed_out.assert_timed_out() is timed_out.error


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"attempt": 0}, ValueError),
        ({"attempt": 4}, ValueError),
        ({"attempt": 1.0}, TypeError),
        ({"attempt": 4, "max_attempts": 3}, ValueError),
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": True}, TypeError),
        ({"max_attempts": 2.0}, TypeError),
        ({"cancel_after": -1}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"grace": None}, TypeError),
        ({"grace": "1"}, TypeError),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        run_job(make(greet), {"name": "ada"}, **options)


def test_a_timeout_of_zero_is_refused() -> None:
    # A job's timeout counts from the start of the attempt; cancel_after=0 is the way to
    # fire the token before execute starts.
    with pytest.raises(ValueError, match=r"timeout must be more than 0 seconds, or None"):
        run_job(make(greet), {"name": "ada"}, timeout=0)


# --- check_distribution --------------------------------------------------------


def test_check_distribution_returns_the_types_of_the_distribution() -> None:
    names = ["demo.echo", "demo.fail", "demo.sleep"]
    assert [t.name for t in check_distribution("orchestrator-demo")] == names
    # Names are compared as pip compares them.
    assert [t.name for t in check_distribution("Orchestrator_Demo")] == names


def test_check_distribution_of_a_missing_distribution() -> None:
    with pytest.raises(AssertionError, match="'orchestrator-nothere' is not installed"):
        check_distribution("orchestrator-nothere")


def test_check_distribution_of_a_distribution_without_plugins() -> None:
    with pytest.raises(AssertionError, match="declares no entry point in the 'orchestrator"):
        check_distribution("pluggy")


def test_check_distribution_lists_load_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES / "dists"))
    before = set(sys.modules)
    try:
        with pytest.raises(AssertionError) as caught:
            check_distribution("orchestrator-brokenimport")
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("orchestrator_brokenimport"):
                del sys.modules[name]
    message = str(caught.value)
    assert message.startswith("distribution 'orchestrator-brokenimport' has problems:\n  - ")
    assert "plugin 'brokenimport' (orchestrator-brokenimport 0.1.0) failed at stage import" in (
        message
    )


def write_distribution(root: Path, name: str, source: str) -> str:
    """A distribution as pip leaves it: a module and a dist-info with the entry point."""
    module = f"kit_{name}_{uuid.uuid4().hex[:8]}"
    (root / f"{module}.py").write_text(source)
    info = root / f"orchestrator_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: orchestrator-{name}\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[orchestrator.plugins]\n{name} = {module}\n")
    return module


PLUGIN_HEAD = """
from typing import Any
from pydantic import BaseModel
from orchestrator_core import JobType, hookimpl
"""


def test_check_distribution_requires_a_description(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PLUGIN_HEAD + (
        "class P(BaseModel):\n    x: int\n"
        "def run(payload, token):\n    return 1\n"
        "@hookimpl\ndef register_job_types():\n"
        "    return [JobType(name='kitnodoc.run', payload=P, execute=run)]\n"
    )
    module = write_distribution(tmp_path, "kitnodoc", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(AssertionError, match=r"kitnodoc.run: no description; give execute"):
        check_distribution("orchestrator-kitnodoc")


def test_check_distribution_reports_a_schema_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PLUGIN_HEAD + (
        "class P(BaseModel):\n    x: Any = object()\n"
        "def run(payload, token):\n    '''Runs.'''\n"
        "@hookimpl\ndef register_job_types():\n"
        "    return [JobType(name='kitschema.run', payload=P, execute=run)]\n"
    )
    module = write_distribution(tmp_path, "kitschema", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    with warnings.catch_warnings():
        # Let the JobType load, as it does outside a test run that turns warnings into errors.
        warnings.simplefilter("ignore")
        with pytest.raises(AssertionError) as caught:
            check_distribution("orchestrator-kitschema")
    assert "kitschema.run: generating the payload's JSON Schema warns:" in str(caught.value)
    assert "not JSON serializable" in str(caught.value)
