"""A private dockerd for the tests: the container plugin's and the compose stack's.

Started by hand as root following shared/DOCKER-ENGINE.md: its own socket, exec root,
pidfile and data root, ``--iptables=false --bridge=none`` so the host's network is left
alone, and stopped with SIGTERM at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import docker
import docker.errors

PING_TIMEOUT = 30.0
STORAGE_DRIVERS = ("overlay2", "vfs")


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
    """A dockerd of the tests' own, with its socket under /run and its data in a temp dir.

    :param name: names the socket, exec root, pidfile and containerd namespaces; two
        engines alive at once in one process need different names.
    :param options: more dockerd options, e.g. ``--default-ulimit``.
    """

    def __init__(self, name: str | None = None, *, options: Sequence[str] = ()) -> None:
        self.name = name or f"orchestrator-test-docker-{os.getpid()}"
        self.host = f"unix:///run/{self.name}.sock"
        self.exec_root = Path("/run") / self.name
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.options = tuple(options)
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
            *self.options,
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

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the running engine's log, for a failure message."""
        if not self.logs:
            return ""
        return self.logs[-1].read_text(errors="replace")[-characters:]

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
