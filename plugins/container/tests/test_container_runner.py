"""``container.run`` against a real engine, run and judged as the worker does.

Every test runs the job type through ``classify`` and ``check_result`` with a real
``CancellationToken``, uses the local busybox image with no network, and (through
the ``token`` fixture) checks that no container of its job is left behind.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import docker.models.containers
import pytest
from orchestrator_container.plugin import register_job_types
from orchestrator_container.runner import LABEL_JOB

from orchestrator_core import CancellationToken, State
from orchestrator_core.attempt import Outcome, check_result, classify

# Reads the limit from inside the container, on cgroup v2 or v1.
READ_MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)


def run(data: dict[str, Any], token: CancellationToken) -> Outcome:
    """Validate the payload and run one attempt, naming its outcome as the worker does."""
    (job_type,) = register_job_types()
    return check_result(classify(job_type, job_type.validate_payload(data), token))


def payload(image: str, *command: str, **options: Any) -> dict[str, Any]:
    return {"image": image, "command": list(command), "network_mode": "none", **options}


def test_a_zero_exit_completes_with_the_exit_code_and_logs(
    token: CancellationToken, image: str
) -> None:
    outcome = run(payload(image, "echo", "hello from a container"), token)

    assert outcome.state is State.COMPLETED, outcome.error
    result = outcome.result
    assert result["exit_code"] == 0
    assert result["logs"] == "hello from a container\n"
    assert result["image"] == image
    assert len(result["container_id"]) == 12
    assert token.progress is not None
    assert token.progress.message == f"container {result['container_id']} running"


def test_logs_hold_stdout_and_stderr_and_keep_the_last_lines(
    token: CancellationToken, image: str
) -> None:
    both = run(payload(image, "sh", "-c", "echo to-stdout; echo to-stderr >&2"), token)
    assert both.state is State.COMPLETED, both.error
    assert sorted(both.result["logs"].splitlines()) == ["to-stderr", "to-stdout"]

    script = "for i in 1 2 3 4 5; do echo line$i; done"
    tail = run(payload(image, "sh", "-c", script, tail_lines=2), token)
    assert tail.state is State.COMPLETED, tail.error
    assert tail.result["logs"] == "line4\nline5\n"


def test_a_non_zero_exit_is_a_failed_attempt_with_code_and_logs(
    token: CancellationToken, image: str
) -> None:
    outcome = run(payload(image, "sh", "-c", "echo oops >&2; exit 3"), token)

    assert outcome.state is State.RETRYING
    assert outcome.reason == "attempt failed"
    assert outcome.error is not None
    assert outcome.error.type == "ContainerFailed"
    assert outcome.error.retryable
    assert "exited with code 3" in outcome.error.message
    assert outcome.error.message.endswith("last lines of its logs:\noops")


def test_a_missing_image_fails_for_good_without_pulling(token: CancellationToken) -> None:
    outcome = run({"image": "localhost/nope:none", "command": ["true"]}, token)

    assert outcome.state is State.FAILED
    assert outcome.error is not None
    assert outcome.error.type == "PermanentError"
    assert not outcome.error.retryable
    assert "'localhost/nope:none' is not on the Docker engine and pull is false" in (
        outcome.error.message
    )


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"memory": "1m"}, "refused to create the container"),
        ({"network_mode": "no-such-network"}, "refused to start the container"),
        ({"command": ["/bin/no-such-program"]}, "refused to start the container"),
    ],
    ids=["memory-below-minimum", "unknown-network", "command-not-in-image"],
)
def test_parameters_the_engine_refuses_fail_for_good(
    token: CancellationToken, image: str, options: dict[str, Any], refused: str
) -> None:
    outcome = run({**payload(image, "true"), **options}, token)

    assert outcome.state is State.FAILED
    assert outcome.error is not None
    assert outcome.error.type == "PermanentError"
    assert f"the Docker engine {refused} for image {image!r}" in outcome.error.message


def test_pull_leaves_an_image_already_on_the_engine_alone(
    token: CancellationToken, image: str
) -> None:
    outcome = run(payload(image, "true", pull=True), token)
    assert outcome.state is State.COMPLETED, outcome.error


def test_a_pull_that_cannot_reach_its_registry_is_a_failed_attempt(
    token: CancellationToken,
) -> None:
    # Port 1 of this machine: the engine's pull is refused at once, nothing leaves the host.
    outcome = run({"image": "localhost:1/nope:none", "command": ["true"], "pull": True}, token)

    assert outcome.state is State.RETRYING
    assert outcome.error is not None
    assert outcome.error.type == "EngineError"
    assert outcome.error.message.startswith("the Docker engine failed to pull the image (500)")
    assert "localhost:1" in outcome.error.message


def test_a_cancel_stops_the_container_within_its_grace(
    token: CancellationToken, image: str
) -> None:
    timer = threading.Timer(0.5, token.cancel)
    started = time.monotonic()
    timer.start()
    try:
        # PID 1 ignores SIGTERM, so the stop takes the whole grace before SIGKILL.
        outcome = run(payload(image, "sleep", "60", stop_grace=1), token)
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        timer.join()

    assert outcome.state is State.CANCELLED
    assert outcome.reason == "cancelled"
    # A generous bound: without the stop this would take the full minute.
    assert elapsed < 15


def test_the_jobs_timeout_firing_the_token_stops_the_container(
    token: CancellationToken, image: str
) -> None:
    timer = threading.Timer(0.3, token.cancel, args=("timeout",))
    timer.start()
    try:
        outcome = run(payload(image, "sleep", "60", stop_grace=0), token)
    finally:
        timer.cancel()
        timer.join()

    assert outcome.state is State.RETRYING
    assert outcome.reason == "timeout"


def test_the_payload_timeout_stops_the_container_and_fails_the_attempt(
    token: CancellationToken, image: str
) -> None:
    script = "echo started; sleep 60"
    started = time.monotonic()
    outcome = run(payload(image, "sh", "-c", script, timeout=1, stop_grace=0), token)
    elapsed = time.monotonic() - started

    assert outcome.state is State.RETRYING
    assert outcome.reason == "attempt failed"
    assert outcome.error is not None
    assert outcome.error.type == "ContainerTimeoutError"
    assert outcome.error.retryable
    assert "ran past the payload's 1 s timeout and was stopped" in outcome.error.message
    assert outcome.error.message.endswith("last lines of its logs:\nstarted")
    assert 1 <= elapsed < 15
    assert not token.cancelled


def test_env_and_working_dir_are_honoured(token: CancellationToken, image: str) -> None:
    script = 'echo "$GREETING"; echo "[$EMPTY]"; pwd'
    options = {"env": {"GREETING": "hello world", "EMPTY": ""}, "working_dir": "/srv/work"}
    outcome = run(payload(image, "sh", "-c", script, **options), token)

    assert outcome.state is State.COMPLETED, outcome.error
    assert outcome.result["logs"] == "hello world\n[]\n/srv/work\n"


def test_limits_and_labels_are_applied_to_the_container(
    token: CancellationToken, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[dict[str, Any]] = []
    collection = docker.models.containers.ContainerCollection
    original = collection.create

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        container = original(self, *args, **kwargs)
        created.append(container.attrs)
        return container

    monkeypatch.setattr(collection, "create", spy)
    outcome = run(payload(image, "sh", "-c", READ_MEMORY_LIMIT, memory="64m", cpus=0.5), token)

    assert outcome.state is State.COMPLETED, outcome.error
    assert outcome.result["logs"] == f"{64 * 1024**2}\n"
    (attrs,) = created
    host_config = attrs["HostConfig"]
    assert host_config["Memory"] == 64 * 1024**2
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["NetworkMode"] == "none"
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_JOB] == token.job_id
    assert labels["orchestrator.attempt"] == "1"
    assert labels["orchestrator.job-type"] == "container.run"


def test_a_token_fired_before_the_start_creates_no_container(
    token: CancellationToken, image: str
) -> None:
    token.cancel()
    assert run(payload(image, "true"), token).state is State.CANCELLED


# The docker SDK leaks the socket of a failed unix connection (a ResourceWarning).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_unreachable_engine_is_a_failed_attempt_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nowhere = "unix:///run/orchestrator-test-no-engine-here.sock"
    monkeypatch.setenv("DOCKER_HOST", nowhere)
    outcome = run({"image": "any", "command": ["true"]}, CancellationToken("job-unreachable", 1))
    gc.collect()  # so the leaked socket is reported while the warning is ignored

    assert outcome.state is State.RETRYING
    assert outcome.error is not None
    assert outcome.error.type == "EngineUnavailableError"
    assert outcome.error.retryable
    assert f"cannot reach the Docker engine at {nowhere}" in outcome.error.message
