"""Every outcome of execute, through real worker processes, RabbitMQ and Redis."""

from __future__ import annotations

import pytest
from harness import Jobs, Workers

from orchestrator_core import State


@pytest.fixture(autouse=True)
def worker(workers: Workers) -> None:
    workers.start(concurrency=2)


def test_a_returned_value_completes_the_job(jobs: Jobs) -> None:
    job = jobs.submit("demo.echo", {"message": "hello", "data": {"n": 1}})
    done = jobs.wait(job.id, State.COMPLETED)
    assert done.result == {"message": "hello", "data": {"n": 1}}
    assert (done.attempts, done.error) == (1, None)
    assert [h.state for h in done.history] == [State.CREATED, State.RUNNING, State.COMPLETED]


def test_an_async_execute_completes(jobs: Jobs) -> None:
    job = jobs.submit("wt.async", {"seconds": 0.05})
    assert jobs.wait(job.id, State.COMPLETED).result == {"slept": 0.05, "async": True}


def test_failures_retry_with_growing_backoff_then_succeed(jobs: Jobs) -> None:
    job = jobs.submit("demo.fail", {"times": 2})
    done = jobs.wait(job.id, State.COMPLETED)
    assert done.result == {"succeeded_on_attempt": 3}
    assert done.error is None
    states = [h.state for h in done.history]
    assert states == [
        State.CREATED,
        State.RUNNING,
        State.RETRYING,
        State.RUNNING,
        State.RETRYING,
        State.RUNNING,
        State.COMPLETED,
    ]
    # demo.fail backs off 0.2 s then 0.4 s, each with jitter in its upper half.
    waits = [
        (done.history[i + 1].at - done.history[i].at).total_seconds()
        for i, h in enumerate(done.history)
        if h.state is State.RETRYING
    ]
    assert 0.1 <= waits[0] < 0.2 + 1.5
    assert 0.2 <= waits[1] < 0.4 + 1.5


def test_failures_past_max_attempts_fail_the_job(jobs: Jobs) -> None:
    job = jobs.submit("demo.fail", {"times": 10}, max_attempts=2)
    failed = jobs.wait(job.id, State.FAILED)
    assert failed.attempts == 2
    assert failed.error is not None
    assert (failed.error.type, failed.error.retryable) == ("RuntimeError", True)
    assert failed.error.message == "planned failure 2/10"
    assert failed.history[-1].reason == "attempts exhausted: attempt failed"


def test_a_permanent_error_fails_without_retry(jobs: Jobs) -> None:
    job = jobs.submit("demo.fail", {"times": 0, "permanent": True, "message": "bad input"})
    failed = jobs.wait(job.id, State.FAILED)
    assert failed.attempts == 1
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("PermanentError", "bad input")
    assert failed.error.retryable is False


def test_a_payload_that_no_longer_validates_fails_without_retry(jobs: Jobs) -> None:
    job = jobs.store.create(
        "demo.sleep", {"seconds": -1}, max_attempts=3, queue=f"{jobs.store.keys.prefix}.demo.sleep"
    )
    jobs.publisher.publish(job.id, 1, f"{jobs.store.keys.prefix}.demo.sleep")
    failed = jobs.wait(job.id, State.FAILED)
    assert failed.attempts == 1
    assert failed.error is not None
    assert failed.error.type == "PayloadInvalid"
    assert "seconds" in failed.error.message
    assert failed.error.retryable is False


def test_an_unserializable_result_fails_with_a_clear_error(jobs: Jobs) -> None:
    job = jobs.submit("wt.unserializable", {})
    failed = jobs.wait(job.id, State.FAILED)
    assert failed.attempts == 1
    assert failed.error is not None
    assert failed.error.type == "ResultNotSerializable"
    assert "not JSON-serializable" in failed.error.message
    assert failed.result is None


def test_a_job_of_a_type_this_worker_lacks_fails_instead_of_hanging(jobs: Jobs) -> None:
    queue = f"{jobs.store.keys.prefix}.demo.echo"
    job = jobs.store.create("gone.missing", {}, max_attempts=3, queue=queue)
    jobs.publisher.publish(job.id, 1, queue)
    failed = jobs.wait(job.id, State.FAILED)
    assert failed.error is not None
    assert failed.error.type == "UnknownJobType"
    assert "gone.missing" in failed.error.message


def test_progress_reported_through_the_token_lands_in_the_job(jobs: Jobs) -> None:
    job = jobs.submit("wt.progress", {"seconds": 30})
    running = jobs.wait(job.id, lambda j: j.progress is not None)
    assert running.state is State.RUNNING
    assert running.progress is not None
    assert (running.progress.fraction, running.progress.message) == (0.5, "half way")
    jobs.store.cancel(job.id)
    assert jobs.wait(job.id, State.CANCELLED).progress == running.progress


def test_a_cooperative_timeout_retries_then_fails(jobs: Jobs) -> None:
    job = jobs.submit("wt.timeout", {"seconds": 30})
    failed = jobs.wait(job.id, State.FAILED)
    assert failed.attempts == 2
    assert failed.error is not None
    assert (failed.error.type, failed.error.retryable) == ("Timeout", True)
    assert [h.reason for h in failed.history if h.state is State.RETRYING] == ["timeout"]
    first_run = failed.history[1].at
    timed_out = failed.history[2].at
    assert 0.4 <= (timed_out - first_run).total_seconds() < 3
