"""``container.run`` against a real engine, run by the testing kit as a worker would.

Every test uses the local busybox image with no network and runs as a job of its own
(the ``job_id`` fixture), which checks afterwards that no container of it is left behind.
"""

from __future__ import annotations

import gc
from typing import Any

import docker.models.containers
import pytest
from orchestrator_container.runner import LABEL_JOB

from orchestrator_core import JobType, PermanentError
from orchestrator_core.testing import JobRunner, run_job

# Reads the limit from inside the container, on cgroup v2 or v1.
READ_MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)

GRACE = 10.0
"""The worker's default grace: a stop waits out the payload's stop_grace and the removal
that follows takes its time, so the kit's 1 s would judge the engine, not the plugin."""


def payload(image: str, *command: str, **options: Any) -> dict[str, Any]:
    return {"image": image, "command": list(command), "network_mode": "none", **options}


def test_a_zero_exit_completes_with_the_exit_code_and_logs(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    run = job_runner.run(container, payload(image, "echo", "hello from a container"), job_id=job_id)

    result = run.assert_completed()
    assert result["exit_code"] == 0
    assert result["logs"] == "hello from a container\n"
    assert result["image"] == image
    assert len(result["container_id"]) == 12
    assert run.progress[-1].message == f"container {result['container_id']} running"


def test_logs_hold_stdout_and_stderr_and_keep_the_last_lines(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    both = payload(image, "sh", "-c", "echo to-stdout; echo to-stderr >&2")
    logs = job_runner.run(container, both, job_id=job_id).assert_completed()["logs"]
    assert sorted(logs.splitlines()) == ["to-stderr", "to-stdout"]

    script = "for i in 1 2 3 4 5; do echo line$i; done"
    tail = payload(image, "sh", "-c", script, tail_lines=2)
    logs = job_runner.run(container, tail, job_id=job_id).assert_completed()["logs"]
    assert logs == "line4\nline5\n"


def test_a_non_zero_exit_is_a_failed_attempt_with_code_and_logs(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    data = payload(image, "sh", "-c", "echo oops >&2; exit 3")
    run = job_runner.run(container, data, job_id=job_id)

    error = run.assert_retried(error_type="ContainerFailed")
    assert run.outcome.reason == "attempt failed"
    assert "exited with code 3" in error.message
    assert error.message.endswith("last lines of its logs:\noops")


def test_a_missing_image_fails_for_good_without_pulling(
    job_runner: JobRunner, container: JobType, job_id: str
) -> None:
    data = {"image": "localhost/nope:none", "command": ["true"]}
    run = job_runner.run(container, data, job_id=job_id)

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert "'localhost/nope:none' is not on the Docker engine and pull is false" in (error.message)


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
    job_runner: JobRunner,
    container: JobType,
    job_id: str,
    image: str,
    options: dict[str, Any],
    refused: str,
) -> None:
    run = job_runner.run(container, {**payload(image, "true"), **options}, job_id=job_id)

    error = run.assert_failed(error_type=PermanentError)
    assert f"the Docker engine {refused} for image {image!r}" in error.message


def test_pull_leaves_an_image_already_on_the_engine_alone(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    job_runner.run(container, payload(image, "true", pull=True), job_id=job_id).assert_completed()


def test_a_pull_that_cannot_reach_its_registry_is_a_failed_attempt(
    job_runner: JobRunner, container: JobType, job_id: str
) -> None:
    # Port 1 of this machine: the engine's pull is refused at once, nothing leaves the host.
    data = {"image": "localhost:1/nope:none", "command": ["true"], "pull": True}
    run = job_runner.run(container, data, job_id=job_id)

    error = run.assert_retried(error_type="EngineError")
    assert error.message.startswith("the Docker engine failed to pull the image (500)")
    assert "localhost:1" in error.message


def test_a_cancel_stops_the_container_within_its_grace(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    # PID 1 ignores SIGTERM, so the stop takes the whole grace before SIGKILL.
    data = payload(image, "sleep", "60", stop_grace=1)
    run = job_runner.run(container, data, job_id=job_id, cancel_after=0.5, grace=GRACE)

    run.assert_cancelled()
    assert run.outcome.reason == "cancelled"
    # A generous bound: without the stop this would take the full minute.
    assert run.duration < 15


def test_the_jobs_timeout_firing_the_token_stops_the_container(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    data = payload(image, "sleep", "60", stop_grace=0)
    run = job_runner.run(container, data, job_id=job_id, timeout=0.3, grace=GRACE)

    run.assert_timed_out()
    run.assert_retried(error_type="Timeout")
    assert run.outcome.reason == "timeout"


def test_the_payload_timeout_stops_the_container_and_fails_the_attempt(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    data = payload(image, "sh", "-c", "echo started; sleep 60", timeout=1, stop_grace=0)
    run = job_runner.run(container, data, job_id=job_id)

    error = run.assert_retried(error_type="ContainerTimeoutError")
    assert run.outcome.reason == "attempt failed"
    assert "ran past the payload's 1 s timeout and was stopped" in error.message
    assert error.message.endswith("last lines of its logs:\nstarted")
    assert 1 <= run.duration < 15
    assert run.token_reason is None


def test_env_and_working_dir_are_honoured(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    script = 'echo "$GREETING"; echo "[$EMPTY]"; pwd'
    options = {"env": {"GREETING": "hello world", "EMPTY": ""}, "working_dir": "/srv/work"}
    run = job_runner.run(container, payload(image, "sh", "-c", script, **options), job_id=job_id)

    result = run.assert_completed()
    assert result["logs"] == "hello world\n[]\n/srv/work\n"


def test_limits_and_labels_are_applied_to_the_container(
    job_runner: JobRunner,
    container: JobType,
    job_id: str,
    image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[dict[str, Any]] = []
    collection = docker.models.containers.ContainerCollection
    original = collection.create

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        created.append(made.attrs)
        return made

    monkeypatch.setattr(collection, "create", spy)
    data = payload(image, "sh", "-c", READ_MEMORY_LIMIT, memory="64m", cpus=0.5)
    run = job_runner.run(container, data, job_id=job_id)

    result = run.assert_completed()
    assert result["logs"] == f"{64 * 1024**2}\n"
    (attrs,) = created
    host_config = attrs["HostConfig"]
    assert host_config["Memory"] == 64 * 1024**2
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["NetworkMode"] == "none"
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_JOB] == job_id
    assert labels["orchestrator.attempt"] == "1"
    assert labels["orchestrator.job-type"] == "container.run"


def test_a_token_fired_before_the_start_creates_no_container(
    job_runner: JobRunner, container: JobType, job_id: str, image: str
) -> None:
    # The job_id fixture finds any container that was created.
    run = job_runner.run(container, payload(image, "true"), job_id=job_id, cancel_after=0)
    run.assert_cancelled()


# The docker SDK leaks the socket of a failed unix connection (a ResourceWarning).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_unreachable_engine_is_a_failed_attempt_naming_it(
    container: JobType, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = "unix:///run/orchestrator-test-no-engine-here.sock"
    monkeypatch.setenv("DOCKER_HOST", nowhere)
    # run_job, not the job_runner fixture, which would keep the run past the test.
    run = run_job(container, {"image": "any", "command": ["true"]})

    error = run.assert_retried(error_type="EngineUnavailableError")
    assert f"cannot reach the Docker engine at {nowhere}" in error.message
    # The frames of what execute raised hold the leaked socket; once they are gone it is
    # collected, and reported, while the warning is ignored.
    del run
    gc.collect()
