"""Running one command in its own process group, and making sure none of it outlives the run.

The command leads a new session (so a new process group): a cancel or a timeout
signals the whole group, and once the command is over, however it ended, the group
is sent SIGKILL so that background processes it left behind die with it. Only a
process that moved itself into another session or group (``setsid``, daemons)
escapes; that needs cgroups, which are not this module's business.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from orchestrator_core import CancellationToken, PermanentError
from orchestrator_shell.exceptions import CommandTimeout

POLL_INTERVAL = 0.05
"""Seconds between checks of the command, the token and the timeout."""

GRACE_POLL_INTERVAL = 0.02
"""Seconds between checks for a process left in the group after SIGTERM."""

CHUNK = 65_536
"""Bytes read or written per system call (a Linux pipe's capacity)."""

DRAIN_TIMEOUT = 2.0
"""Seconds the readers get to reach the end of the output once the group is gone.

They only need longer when a process that escaped the group still holds a pipe;
its later output is then dropped."""

PIPE_POLL_MS = 100
"""How long (ms) a reader or writer blocks before checking whether it must stop."""

_PROC = Path("/proc")

Stop = Literal["token", "timeout"]


class Tail:
    """The last ``limit`` bytes of a stream; memory stays near ``limit`` whatever flows through.

    Fed from one thread and read once that thread has finished.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        """Bytes seen in all."""
        self._chunks: collections.deque[bytes] = collections.deque()
        self._kept = 0

    def add(self, chunk: bytes) -> None:
        """Append ``chunk``, dropping whole chunks that fall out of the last ``limit`` bytes."""
        self.total += len(chunk)
        self._chunks.append(chunk)
        self._kept += len(chunk)
        while self._chunks and self._kept - len(self._chunks[0]) >= self.limit:
            self._kept -= len(self._chunks.popleft())

    @property
    def truncated(self) -> bool:
        """True when more than ``limit`` bytes were seen, so the start is missing."""
        return self.total > self.limit

    def data(self) -> bytes:
        """The last ``limit`` bytes seen (fewer if fewer were)."""
        if self.limit == 0:
            return b""
        return b"".join(self._chunks)[-self.limit :]

    def text(self) -> str:
        """The kept bytes as UTF-8 (invalid bytes replaced).

        A character cut in two by the truncation is dropped rather than shown as a
        replacement character.
        """
        data = self.data()
        if self.truncated:
            start = 0
            while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
                start += 1
            data = data[start:]
        return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Completed:
    """A command that ended by itself: its exit status and the tails of its output.

    ``returncode`` is negative (``-signal``) when a signal ended it.
    """

    returncode: int
    stdout: Tail
    stderr: Tail


def run_command(
    argv: Sequence[str],
    token: CancellationToken,
    *,
    env: Mapping[str, str],
    cwd: str | None,
    stdin: bytes | None,
    timeout: float | None,
    tail_bytes: int,
    kill_grace: float,
) -> Completed:
    """Run ``argv`` to its end, or stop its whole process group when told to.

    :param argv: the program and its arguments (no shell).
    :param token: when it fires, the group gets SIGTERM, then SIGKILL after
        ``kill_grace``, and :class:`~orchestrator_core.JobCancelled` is raised.
    :param env: the complete environment of the command.
    :param cwd: its working directory, or None for the current one.
    :param stdin: bytes written to its standard input, or None for an empty one.
    :param timeout: seconds it may run, or None; past them it is stopped like a
        cancelled command and :class:`CommandTimeout` is raised.
    :param tail_bytes: how much of the end of stdout and of stderr to keep.
    :param kill_grace: seconds between SIGTERM and SIGKILL.
    :return: the exit status and output tails of a command that ended by itself,
        whatever its exit status.
    :raises PermanentError: when ``cwd`` is not a directory or the program cannot be
        executed (missing, not executable, not a program).
    """
    # A cancel that arrived before the start must not run the command at all.
    token.raise_if_cancelled()
    if cwd is not None and not os.path.isdir(cwd):
        raise PermanentError(f"the working directory {cwd!r} does not exist or is not a directory")
    proc = _start(argv, env=env, cwd=cwd, with_stdin=stdin is not None)
    # The leader of a new session leads its group and cannot leave it, so this stays true.
    pgid = proc.pid
    stop_io = threading.Event()
    stdout, stderr = Tail(tail_bytes), Tail(tail_bytes)
    threads: list[threading.Thread] = []
    stopped: Stop | None = None
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        threads.append(_thread("stdout", _read, proc.stdout, stdout, stop_io))
        threads.append(_thread("stderr", _read, proc.stderr, stderr, stop_io))
        if stdin is not None:
            assert proc.stdin is not None
            threads.append(_thread("stdin", _write, proc.stdin, stdin, stop_io))
        stopped = _wait(proc, token, timeout)
        if stopped is not None:
            _terminate(proc, pgid, kill_grace)
    finally:
        # Also when the leader exited by itself: background processes it started die here.
        _kill_group(pgid)
        proc.wait()
        _finish(threads, stop_io)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if stopped == "timeout":
        assert timeout is not None
        raise CommandTimeout(argv[0], timeout=timeout)
    if stopped == "token":
        token.raise_if_cancelled()
    return Completed(proc.returncode, stdout, stderr)


def _start(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, with_stdin: bool
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise PermanentError(f"cannot run {argv[0]!r}: {exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise PermanentError(f"cannot run {argv[0]!r}: {exc}") from exc
        raise  # e.g. too many open files: another attempt may do better


def _thread(name: str, target: Callable[..., None], *args: object) -> threading.Thread:
    # Daemon, so that no thread can ever hold up the worker's exit.
    thread = threading.Thread(target=target, args=args, name=f"shell.run {name}", daemon=True)
    thread.start()
    return thread


def _read(pipe: IO[bytes], tail: Tail, stop: threading.Event) -> None:
    fd = pipe.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not stop.is_set():
        if not poller.poll(PIPE_POLL_MS):
            continue
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return
        tail.add(chunk)


def _write(pipe: IO[bytes], data: bytes, stop: threading.Event) -> None:
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    view = memoryview(data)
    try:
        while view and not stop.is_set():
            if not poller.poll(PIPE_POLL_MS):
                continue
            try:
                view = view[os.write(fd, view[:CHUNK]) :]
            except BlockingIOError:
                continue
    except BrokenPipeError:
        pass  # the command closed its standard input or ended: it did not want the rest
    finally:
        # Closing is what tells the command its input has ended.
        pipe.close()


def _wait(
    proc: subprocess.Popen[bytes], token: CancellationToken, timeout: float | None
) -> Stop | None:
    """Wait for the leader to exit; say why not if the token fired or the timeout expired first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not _exited(proc):
        step = POLL_INTERVAL
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            step = min(step, remaining)
        if token.wait(step):
            return "token"
    return None


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once the leader has exited, without reaping it.

    An unreaped leader keeps its pid, hence the group id, from being reused, so a
    later signal to the group cannot reach an unrelated process.
    """
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already (SIGCHLD ignored by the host process)


def _terminate(proc: subprocess.Popen[bytes], pgid: int, grace: float) -> None:
    """SIGTERM the group, then wait up to ``grace`` for all of it to exit; the caller kills."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(proc, pgid):
        time.sleep(GRACE_POLL_INTERVAL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(pgid, signum)


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def _group_alive(proc: subprocess.Popen[bytes], pgid: int) -> bool:
    """True while a process of the group is still running (zombies do not count).

    ``killpg(pgid, 0)`` cannot tell: the unreaped leader, and exited orphans that
    init has not reaped yet (slow, or absent when the worker is PID 1 in a
    container), still answer it. So, on Linux, look for a live member in /proc;
    elsewhere, go by the leader alone.
    """
    if not _exited(proc):
        return True
    if not _PROC.is_dir():
        return False
    with os.scandir(_PROC) as entries:
        return any(e.name.isdigit() and _live_member(e.path, pgid) for e in entries)


def _live_member(path: str, pgid: int) -> bool:
    try:
        with open(os.path.join(path, "stat"), "rb") as f:
            stat = f.read()
    except OSError:
        return False  # gone meanwhile, or not ours to read
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat.rpartition(b")")[2].split()
    try:
        return int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")
    except (IndexError, ValueError):
        return False


def _finish(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Let the readers reach the end of the output, then stop whatever is left."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join()
