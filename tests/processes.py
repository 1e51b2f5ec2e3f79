"""Starting and stopping the servers and processes tests run: a free loopback port,
and a stop that always ends what was started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> None:
    """SIGTERM to ``process``'s group (started with ``start_new_session``), SIGKILL to it
    if it is still there after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM to ``process``, SIGKILL if it is still there after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
