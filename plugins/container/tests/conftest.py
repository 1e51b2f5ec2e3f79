"""A real Docker engine for the container tests: the one at DOCKER_HOST, or a private dockerd.

The private engine is the repository's ``tests/dockerd.py``, shared with the compose
stack's tests: started by hand as root with its own socket, exec root and data root,
``--iptables=false --bridge=none`` so the host's network is left alone, and stopped
with SIGTERM at the end. The test image is imported from Debian's static busybox, so
no registry is needed.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import docker
import docker.errors
import pytest
from orchestrator_container import host_access
from orchestrator_container.runner import LABEL_JOB

from orchestrator_core import JobType
from orchestrator_core.testing import check_distribution

# The engine code lives in the repository's tests/, which is on sys.path only when a
# test from there was collected first.
SHARED = str(Path(__file__).resolve().parents[3] / "tests")
if SHARED not in sys.path:
    sys.path.append(SHARED)
from dockerd import PrivateDockerd, ping  # noqa: E402

IMAGE = "localhost/orchestrator-busybox:test"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "sleep", "cat", "false", "true", "pwd")


@dataclass(frozen=True)
class Engine:
    """The engine the tests use, and a client connected to it."""

    host: str
    client: docker.DockerClient


STARTUPS: list[str] = []
"""How the session's engine came up, for the terminal summary."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in STARTUPS:
        terminalreporter.write_line(line)


def unavailable(reason: str) -> NoReturn:
    """Skip a local run that has no engine; in CI, where there must be one, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"a Docker engine is required in CI: {reason}")
    pytest.skip(f"no Docker engine for the container tests: {reason}")


def busybox_image_tar() -> bytes:
    """A root file system holding only /bin/busybox and links to the applets the tests use."""
    data = BUSYBOX.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("bin")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        binary = tarfile.TarInfo("bin/busybox")
        binary.size, binary.mode = len(data), 0o755
        tar.addfile(binary, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    return buffer.getvalue()


def busybox_problem() -> str | None:
    """Why /bin/busybox cannot be the test image, or None if it can."""
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing (apt-get install busybox-static)"
    head = BUSYBOX.read_bytes()[:4096]
    if b"/ld-linux" in head or b"/ld-musl" in head:
        return f"{BUSYBOX} is dynamically linked (apt-get install busybox-static)"
    return None


def ensure_image(client: docker.DockerClient) -> None:
    try:
        client.images.get(IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    problem = busybox_problem()
    if problem:
        unavailable(f"cannot build {IMAGE}: {problem}")
    repository, tag = IMAGE.rsplit(":", 1)
    client.api.import_image_from_data(
        busybox_image_tar(), repository=repository, tag=tag, changes=['CMD ["/bin/sh"]']
    )


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The engine at DOCKER_HOST if it answers, else a private dockerd started for the session.

    DOCKER_HOST points at it for the whole session, so the job type finds it as the
    worker would.
    """
    dockerd: PrivateDockerd | None = None
    host = os.environ.get("DOCKER_HOST")
    if not (host and ping(host)):
        missing = []
        if shutil.which("dockerd") is None:
            missing.append("no dockerd binary (apt-get install docker.io)")
        if os.geteuid() != 0:
            missing.append("not root, so a private dockerd cannot be started")
        if missing:
            answer = f"DOCKER_HOST={host} does not answer" if host else "DOCKER_HOST is not set"
            unavailable(f"{answer}, and {'; '.join(missing)}")
        dockerd = PrivateDockerd()
        started = time.monotonic()
        try:
            dockerd.start()
        except RuntimeError as exc:
            dockerd.remove_data()
            unavailable(str(exc))
        STARTUPS.append(
            f"container tests: private dockerd on {dockerd.host} answered in "
            f"{time.monotonic() - started:.2f} s (storage driver {dockerd.driver})"
        )
        host = dockerd.host
    assert host is not None
    patch = pytest.MonkeyPatch()
    patch.setenv("DOCKER_HOST", host)
    client = docker.DockerClient(base_url=host, timeout=30)
    try:
        ensure_image(client)
        yield Engine(host=host, client=client)
    finally:
        client.close()
        patch.undo()
        if dockerd is not None:
            dockerd.stop()
            dockerd.remove_data()


@pytest.fixture
def image(engine: Engine) -> str:
    """The local busybox image (sh, echo, sleep, cat, false, true, pwd), on the engine."""
    return IMAGE


@pytest.fixture(scope="session")
def container() -> JobType:
    """``container.run`` as the installed distribution registers it."""
    [job_type] = check_distribution("orchestrator-container")
    return job_type


@pytest.fixture
def job_id(engine: Engine) -> Iterator[str]:
    """A job id of the test's own, for ``job_id=``; afterwards, no container labelled with it
    may remain."""
    job_id = f"test-{uuid.uuid4().hex[:12]}"
    yield job_id
    leftovers = engine.client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"})
    for container in leftovers:
        container.remove(force=True)
    assert leftovers == [], f"containers of job {job_id} were not removed: {leftovers}"


Allow = Callable[..., None]
"""Sets the host-access settings for the rest of the test: ``allow(host_network=True)``."""


@pytest.fixture(autouse=True)
def allow(monkeypatch: pytest.MonkeyPatch) -> Iterator[Allow]:
    """Every test starts with the settings' defaults (nothing of the host allowed), whatever
    the machine's environment says; ``allow(...)`` changes them as the variables would."""
    variables = {
        "host_network": host_access.HOST_NETWORK_SETTING,
        "privileged": host_access.PRIVILEGED_SETTING,
    }
    for name in variables.values():
        monkeypatch.delenv(name, raising=False)
    host_access.host_access.cache_clear()

    def set_allowed(**allowed: bool) -> None:
        for key, value in allowed.items():
            monkeypatch.setenv(variables[key], str(value).lower())
        host_access.host_access.cache_clear()

    yield set_allowed
    host_access.host_access.cache_clear()
