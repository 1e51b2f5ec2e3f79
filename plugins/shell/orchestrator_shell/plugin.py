"""The shell plugin: the ``shell.run`` job type, which runs one command without a shell."""

from __future__ import annotations

import tempfile
from typing import TypedDict

from orchestrator_core import CancellationToken, JobType, hookimpl
from orchestrator_shell.environment import command_environment
from orchestrator_shell.exceptions import CommandFailed
from orchestrator_shell.payload import ShellPayload
from orchestrator_shell.process import run_command


class ShellResult(TypedDict):
    """Result of a ``shell.run`` job whose command exited with code 0."""

    exit_code: int
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool


def run(payload: ShellPayload, token: CancellationToken) -> ShellResult:
    """Run a command (argv, never through a shell) and return its exit code and output tails.

    The command leads its own process group. A cancel, the job's timeout or the
    payload's timeout sends the group SIGTERM, then SIGKILL after kill_grace; when
    the command ends, any process it left in its group is killed. A non-zero exit
    fails the job with CommandFailed, a timeout with CommandTimeout; a missing
    program or working directory fails it at once. One attempt, and a client cannot
    ask for more: commands are not assumed safe to repeat.

    The command never sees the worker's environment: it gets PATH
    (/usr/local/bin:/usr/bin:/bin), LANG and LC_ALL (C.UTF-8), HOME (a new empty
    directory, removed afterwards) and the payload's env and secret_env.
    """
    with tempfile.TemporaryDirectory(prefix="shell.run-", ignore_cleanup_errors=True) as home:
        done = run_command(
            payload.argv,
            token,
            env=command_environment(payload, home=home),
            cwd=payload.cwd,
            stdin=None if payload.stdin is None else payload.stdin.encode("utf-8"),
            timeout=payload.timeout,
            tail_bytes=payload.tail_bytes,
            kill_grace=payload.kill_grace,
        )
    if done.returncode != 0:
        raise CommandFailed(
            payload.argv[0], returncode=done.returncode, stderr_tail=done.stderr.text()
        )
    return {
        "exit_code": done.returncode,
        "stdout": done.stdout.text(),
        "stderr": done.stderr.text(),
        "stdout_truncated": done.stdout.truncated,
        "stderr_truncated": done.stderr.truncated,
    }


@hookimpl
def register_job_types() -> list[JobType]:
    """Register ``shell.run``."""
    return [
        # Not idempotent in general, so one attempt, which a submission cannot raise; no
        # timeout of its own (the payload has one).
        JobType(
            name="shell.run",
            payload=ShellPayload,
            execute=run,
            max_attempts=1,
            max_attempts_limit=1,
            timeout=None,
        )
    ]
