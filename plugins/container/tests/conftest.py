"""A real Docker engine for the container tests: the one at DOCKER_HOST, or a private dockerd.

The private engine follows shared/DOCKER-ENGINE.md: started by hand as root with its
own socket, exec root and data root, ``--iptables=false --bridge=none`` so the host's
network is left alone, and stopped with SIGTERM at the end. The test image is
imported from Debian's static busybox, so no registry is needed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import docker
import docker.errors
import pytest
from orchestrator_container.runner import LABEL_JOB

from orchestrator_core import CancellationToken

IMAGE = "localhost/orchestrator-busybox:test"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "sleep", "cat", "false", "true", "pwd")
PING_TIMEOUT = 30.0
STORAGE_DRIVERS = ("overlay2", "vfs")


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


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ping(host: str, timeout: float = 2.0) -> bool:
    """True if the engine at ``host`` answers ``GET /_ping``.

    Done by hand for unix and tcp hosts because the docker SDK leaks its socket when a
    connection fails, and the tests turn that ResourceWarning into an error.
    """
    url = urlsplit(host)
    if url.scheme == "unix":
        connection: http.client.HTTPConnection = _UnixHTTPConnection(url.path, timeout)
    elif url.scheme in ("tcp", "http") and not os.environ.get("DOCKER_TLS_VERIFY"):
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    else:
        try:
            client = docker.DockerClient(base_url=host, timeout=int(timeout) or 1)
        except docker.errors.DockerException:
            return False
        with contextlib.closing(client):
            return client.ping()
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class PrivateDockerd:
    """A dockerd of the tests' own, with its socket under /run and its data in a temp dir."""

    def __init__(self) -> None:
        self.name = f"orchestrator-test-docker-{os.getpid()}"
        self.host = f"unix:///run/{self.name}.sock"
        self.exec_root = Path("/run") / self.name
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.driver = ""

    def start(self) -> None:
        """Start with overlay2, falling back to vfs where overlay2 does not work.

        :raises RuntimeError: with the end of dockerd's log when no driver works.
        """
        for driver in STORAGE_DRIVERS:
            if self._start(driver):
                return
            self.stop()
            self._clean()
        tails = "\n".join(
            f"--- {log}\n{log.read_text(errors='replace')[-1500:]}" for log in self.logs
        )
        raise RuntimeError(f"dockerd did not answer on {self.host}:\n{tails}")

    def _start(self, driver: str) -> bool:
        log = self.root / f"dockerd-{driver}.log"
        self.logs.append(log)
        command = [
            "dockerd",
            "--host", self.host,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.exec_root),
            "--pidfile", f"/run/{self.name}.pid",
            f"--storage-driver={driver}",
            "--iptables=false",
            "--bridge=none",
            # Its own containerd namespaces, in case it shares a system containerd.
            "--containerd-namespace", self.name,
            "--containerd-plugins-namespace", f"{self.name}-plugins",
        ]  # fmt: skip
        with log.open("wb") as out:
            # A session of its own, so a Ctrl-C of pytest leaves it to the teardown.
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + PING_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if ping(self.host, timeout=1.0):
                self.driver = driver
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """SIGTERM (dockerd takes its containerd down with it), then SIGKILL after 30 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Its own process group (start_new_session), so its containerd goes too.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def remove_data(self) -> None:
        """Remove everything it left, logs included; call after :meth:`stop`."""
        self._clean()
        shutil.rmtree(self.root)

    def _clean(self) -> None:
        # dockerd bind-mounts its data root onto itself; one that failed to start
        # leaves that mount behind, and the next one would not undo it.
        data = self.root / "data"
        if mounted(data):
            subprocess.run(["umount", str(data)], check=True)
        if data.exists():
            shutil.rmtree(data)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        for leftover in (f"/run/{self.name}.sock", f"/run/{self.name}.pid"):
            Path(leftover).unlink(missing_ok=True)


def mounted(path: Path) -> bool:
    """True if something is mounted on ``path``; ``os.path.ismount`` misses bind mounts."""
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


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


@pytest.fixture
def token(engine: Engine) -> Iterator[CancellationToken]:
    """A token with a job id of its own; afterwards, no container labelled with it may remain."""
    job_id = f"test-{uuid.uuid4().hex[:12]}"
    yield CancellationToken(job_id, 1)
    leftovers = engine.client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"})
    for container in leftovers:
        container.remove(force=True)
    assert leftovers == [], f"containers of job {job_id} were not removed: {leftovers}"
