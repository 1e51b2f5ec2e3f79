"""The errors of a ``shell.run`` attempt whose command ran but did not succeed.

Neither is a :class:`~orchestrator_core.PermanentError`, so the worker counts each
as a failed attempt; ``shell.run`` allows one attempt, so the job then ends FAILED.
A command that cannot be started at all raises ``PermanentError`` instead.
"""

from __future__ import annotations

import functools
import signal as signals
from typing import Any

MAX_STDERR_LINES = 10
"""How many of the last lines of standard error a failure message quotes."""

MAX_STDERR_CHARS = 1500
"""At most this many characters of standard error are quoted (the job keeps 2000)."""


class CommandError(Exception):
    """Raised when a command started but did not succeed; the base of this plugin's errors.

    :ivar program: the program that was run (``argv[0]``).
    """

    def __init__(self, message: str, *, program: str) -> None:
        super().__init__(message)
        self.program = program

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only arguments would otherwise be lost when pickled.
        return (functools.partial(type(self), str(self), program=self.program), ())


# The names say what happened to the command; they are the error types a job shows.
class CommandFailed(CommandError):  # noqa: N818
    """Raised when the command exits with a non-zero code or is ended by a signal.

    :ivar exit_code: the exit code, or None when a signal ended the command.
    :ivar signal: the number of the signal that ended the command, or None.
    :ivar stderr_tail: the end of its standard error that was kept (``tail_bytes``).
    """

    def __init__(self, program: str, *, returncode: int, stderr_tail: str = "") -> None:
        self.returncode = returncode
        self.exit_code = returncode if returncode >= 0 else None
        self.signal = -returncode if returncode < 0 else None
        self.stderr_tail = stderr_tail
        super().__init__(_failure_message(program, returncode, stderr_tail), program=program)

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = functools.partial(
            CommandFailed, self.program, returncode=self.returncode, stderr_tail=self.stderr_tail
        )
        return (rebuild, ())


class CommandTimeout(CommandError):  # noqa: N818
    """Raised when the command runs past the payload's ``timeout`` and has been stopped.

    :ivar timeout: the payload's timeout, in seconds.
    """

    def __init__(self, program: str, *, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"{program!r} ran past its {timeout:g} s timeout and was stopped", program=program
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (functools.partial(CommandTimeout, self.program, timeout=self.timeout), ())


def _failure_message(program: str, returncode: int, stderr_tail: str) -> str:
    if returncode >= 0:
        message = f"{program!r} exited with code {returncode}"
    else:
        try:
            name = signals.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        message = f"{program!r} was ended by {name}"
    lines = stderr_tail.rstrip().splitlines()[-MAX_STDERR_LINES:]
    if not lines:
        return message + " (no standard error)"
    quoted = "\n".join(lines)[-MAX_STDERR_CHARS:]
    return f"{message}; standard error ends with:\n{quoted}"
