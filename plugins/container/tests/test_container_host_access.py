"""What ``container.run`` may take from the worker's machine, against a real engine.

By default a job cannot share the host's network, under any name, nor run privileged, add
capabilities or get devices; the operator's settings allow them (the ``allow`` fixture
sets them as the environment variables would).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.models.containers
import pytest

from orchestrator_core import JobType, PermanentError
from orchestrator_core.testing import JobRunner

Allow = Callable[..., None]

CAP_NET_ADMIN = 12
"""The bit of CAP_NET_ADMIN in the capability masks of /proc/<pid>/status."""

GRACE = 10.0
"""The worker's default grace: a container the engine fails to start is removed at the
engine's pace, which the kit's 1 s would misjudge."""


def payload(image: str, *command: str, **options: Any) -> dict[str, Any]:
    return {"image": image, "command": list(command), "network_mode": "none", **options}


def interfaces(table: str) -> list[str]:
    """The interface names of a /proc/net/dev table (two header lines, then one a line)."""
    return sorted(line.split(":")[0].strip() for line in table.splitlines()[2:])


def effective_capabilities(logs: str) -> int:
    [line] = [line for line in logs.splitlines() if line.startswith("CapEff:")]
    return int(line.split()[1], 16)


@pytest.fixture
def client(image: str) -> Iterator[docker.DockerClient]:
    """A client of the test engine (``DOCKER_HOST`` points at it once ``image`` is there)."""
    engine = docker.from_env(timeout=30)
    yield engine
    engine.close()


@pytest.fixture
def host_container(client: docker.DockerClient, image: str) -> Iterator[str]:
    """The id of a container of the test's own on the host's network (made here, as an
    operator's own service would be), removed afterwards."""
    made = client.containers.run(
        image,
        ["sleep", "60"],
        detach=True,
        network_mode="host",
    )
    try:
        yield str(made.id)
    finally:
        made.remove(force=True)


def test_the_host_network_named_by_its_id_is_refused_before_a_container_is_made(
    job_runner: JobRunner,
    container: JobType,
    job_id: str,
    image: str,
    client: docker.DockerClient,
) -> None:
    host_id = client.networks.get("host").id

    run = job_runner.run(container, payload(image, "true", network_mode=host_id), job_id=job_id)

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert f"network_mode {host_id!r} shares the worker machine's network" in error.message
    assert "is the host's (driver 'host')" in error.message
    assert "ORCHESTRATOR_CONTAINER_ALLOW_HOST_NETWORK=true" in error.message
    # The job_id fixture checks that no container of the job was made.


def test_sharing_the_network_of_a_container_on_the_host_network_is_refused(
    job_runner: JobRunner, container: JobType, job_id: str, image: str, host_container: str
) -> None:
    data = payload(image, "true", network_mode=f"container:{host_container}")

    run = job_runner.run(container, data, job_id=job_id)

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert f"container {host_container} is on 'host'" in error.message


def test_sharing_the_network_of_a_container_without_one_is_allowed(
    job_runner: JobRunner,
    container: JobType,
    job_id: str,
    image: str,
    client: docker.DockerClient,
) -> None:
    other = client.containers.run(image, ["sleep", "60"], detach=True, network_mode="none")
    try:
        data = payload(image, "cat", "/proc/net/dev", network_mode=f"container:{other.id}")
        logs = job_runner.run(container, data, job_id=job_id).assert_completed()["logs"]
    finally:
        other.remove(force=True)
    assert "lo:" in logs


def test_with_the_setting_a_container_gets_the_hosts_network(
    job_runner: JobRunner, container: JobType, job_id: str, image: str, allow: Allow
) -> None:
    allow(host_network=True)
    read = ["cat", "/proc/net/dev"]

    own = job_runner.run(container, payload(image, *read), job_id=job_id).assert_completed()
    host = job_runner.run(
        container, payload(image, *read, network_mode="host"), job_id=job_id
    ).assert_completed()

    # With no network of its own the container has only its loopback; on the host's it
    # sees the machine's interfaces (the test engine runs in this machine's namespace).
    assert interfaces(own["logs"]) == ["lo"]
    with open("/proc/net/dev") as table:
        assert interfaces(host["logs"]) == interfaces(table.read())


def test_with_the_setting_capabilities_are_added(
    job_runner: JobRunner, container: JobType, job_id: str, image: str, allow: Allow
) -> None:
    allow(privileged=True)
    read = ["cat", "/proc/self/status"]

    plain = job_runner.run(container, payload(image, *read), job_id=job_id).assert_completed()
    added = job_runner.run(
        container, payload(image, *read, cap_add=["NET_ADMIN"]), job_id=job_id
    ).assert_completed()

    assert not effective_capabilities(plain["logs"]) & (1 << CAP_NET_ADMIN)
    assert effective_capabilities(added["logs"]) & (1 << CAP_NET_ADMIN)


def test_with_the_setting_a_device_is_given_to_the_container(
    job_runner: JobRunner, container: JobType, job_id: str, image: str, allow: Allow
) -> None:
    allow(privileged=True)
    script = "[ -c /dev/extra-null ] && echo device-present"
    data = payload(image, "sh", "-c", script, devices=["/dev/null:/dev/extra-null:rw"])

    logs = job_runner.run(container, data, job_id=job_id).assert_completed()["logs"]

    assert logs == "device-present\n"


def test_with_the_setting_the_engine_is_asked_for_a_privileged_container(
    job_runner: JobRunner,
    container: JobType,
    job_id: str,
    image: str,
    allow: Allow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whether the engine can then start it depends on the capabilities it has itself (an
    # engine inside a container may lack some), so this checks what it was asked for.
    allow(privileged=True)
    created: list[dict[str, Any]] = []
    collection = docker.models.containers.ContainerCollection
    original = collection.create

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        created.append(made.attrs)
        return made

    monkeypatch.setattr(collection, "create", spy)

    job_runner.run(container, payload(image, "true", privileged=True), job_id=job_id, grace=GRACE)

    [attrs] = created
    assert attrs["HostConfig"]["Privileged"] is True
