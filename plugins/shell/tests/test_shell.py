"""``shell.run`` with real processes, run by the kit as a worker would (no Redis, no broker)."""

from __future__ import annotations

import inspect
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from orchestrator_shell import CommandFailed, CommandTimeout, ShellPayload, plugin
from orchestrator_shell.environment import SAFE_PATH
from pydantic import ValidationError

from orchestrator_core import CancellationToken, JobType, PermanentError, State
from orchestrator_core.testing import JobRunner, check_distribution

PY = sys.executable


@pytest.fixture(scope="module")
def shell() -> JobType:
    """``shell.run`` as the installed distribution registers it."""
    [job_type] = check_distribution("orchestrator-shell")
    return job_type


def py(code: str, **fields: Any) -> dict[str, Any]:
    return {"argv": [PY, "-c", code], **fields}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in (b"Z", b"X")


def group_members(pgid: int) -> list[int]:
    """The running processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rpartition(b")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def group_gone(pgid: int) -> bool:
    """True when no process of the group is left.

    An orphan killed with its group stays a zombie until init reaps it (on some
    machines init does so only every second or two); a zombie runs nothing more, so
    it counts as gone.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return not group_members(pgid)


def assert_no_orphans(pids_file: Path) -> None:
    """The group led by the first pid in the file, and every pid listed, are gone."""
    pgid, *children = (int(line) for line in pids_file.read_text().split())
    assert children, "the command did not start its background processes"
    wait_for(lambda: group_gone(pgid), f"process group {pgid} to be gone")
    assert not [pid for pid in children if running(pid)]


# A shell that records its pid (the group id) and two background sleeps' pids, then $END.
SPAWN = 'echo $$ > "$0"; sleep 60 & echo $! >> "$0"; sleep 60 & echo $! >> "$0"; '


def test_success_returns_the_exit_code_and_both_tails(
    job_runner: JobRunner, shell: JobType
) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"

    run = job_runner.run(shell, py(code))

    run.assert_completed(
        result={
            "exit_code": 0,
            "stdout": "out\n",
            "stderr": "err\n",
            "stdout_truncated": False,
            "stderr_truncated": False,
        }
    )


def test_a_megabyte_of_output_keeps_only_the_tail(job_runner: JobRunner, shell: JobType) -> None:
    code = "import sys; sys.stdout.write('x' * 1_048_576 + 'END'); sys.stderr.write('e' * 50)"

    run = job_runner.run(shell, py(code, tail_bytes=100))

    result = run.assert_completed()
    assert result["stdout"] == "x" * 97 + "END"
    assert result["stdout_truncated"] is True
    assert result["stderr"] == "e" * 50
    assert result["stderr_truncated"] is False


def test_tail_bytes_zero_keeps_nothing_and_says_so(job_runner: JobRunner, shell: JobType) -> None:
    run = job_runner.run(shell, py("print('hello')", tail_bytes=0))

    result = run.assert_completed()
    assert (result["stdout"], result["stdout_truncated"]) == ("", True)
    assert (result["stderr"], result["stderr_truncated"]) == ("", False)


def test_output_is_decoded_as_utf8_without_a_half_character_at_the_cut(
    job_runner: JobRunner, shell: JobType
) -> None:
    # 'é' is two bytes, so a 101-byte tail starts in the middle of one.
    code = "import sys; sys.stdout.buffer.write('é'.encode() * 1000 + b'\\xff!')"

    run = job_runner.run(shell, py(code, tail_bytes=101))

    result = run.assert_completed()
    assert result["stdout"] == "é" * 49 + "\ufffd!"


def test_env_is_given_and_cwd_is_honoured(
    job_runner: JobRunner, shell: JobType, tmp_path: Path
) -> None:
    code = "import os; print(os.environ['SHELL_TEST_VAR'], os.environ['PATH'], os.getcwd())"

    run = job_runner.run(shell, py(code, env={"SHELL_TEST_VAR": "a value"}, cwd=str(tmp_path)))

    result = run.assert_completed()
    assert result["stdout"] == f"a value {SAFE_PATH} {tmp_path.resolve()}\n"


def test_the_command_gets_a_minimal_environment_and_none_of_the_workers(
    job_runner: JobRunner, shell: JobType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS", "worker-key-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-cloud-secret")

    result = job_runner.run(shell, {"argv": ["env"]}).assert_completed()

    variables = dict(line.split("=", 1) for line in result["stdout"].splitlines())
    assert set(variables) == {"PATH", "HOME", "LANG", "LC_ALL"}
    assert variables["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert variables["LANG"] == variables["LC_ALL"] == "C.UTF-8"
    assert "worker-" not in result["stdout"]


def test_home_is_a_new_empty_directory_removed_afterwards(
    job_runner: JobRunner, shell: JobType
) -> None:
    script = 'test -d "$HOME" && test -z "$(ls -A "$HOME")" && touch "$HOME/x" && echo "$HOME"'

    first = job_runner.run(shell, {"argv": ["sh", "-c", script]}).assert_completed()
    second = job_runner.run(shell, {"argv": ["sh", "-c", script]}).assert_completed()

    homes = [Path(run["stdout"].strip()) for run in (first, second)]
    assert homes[0] != homes[1]
    assert Path.home() not in homes
    assert not any(home.exists() for home in homes)


def test_env_may_replace_the_defaults(job_runner: JobRunner, shell: JobType) -> None:
    env = {"PATH": f"{Path(PY).parent}:/usr/bin:/bin", "LANG": "en_US.UTF-8", "HOME": "/tmp"}
    code = "import os; print(os.environ['PATH'], os.environ['LANG'], os.environ['HOME'])"

    run = job_runner.run(shell, {"argv": [Path(PY).name, "-c", code], "env": env})

    assert run.assert_completed()["stdout"] == f"{env['PATH']} en_US.UTF-8 /tmp\n"


def test_secret_env_reaches_the_command_but_not_the_shown_payload(tmp_path: Path) -> None:
    # Straight to execute: the payload keeps the real values, as the worker's does.
    payload = ShellPayload.model_validate(
        {
            "argv": ["sh", "-c", 'printf "%s %s" "$TOKEN" "$PLAIN"'],
            "env": {"PLAIN": "visible"},
            "secret_env": {"TOKEN": "s3cret"},
        }
    )

    result = plugin.run(payload, CancellationToken("test-secret-env", 1))

    assert result["stdout"] == "s3cret visible"
    shown = payload.model_dump(mode="json")
    assert shown["secret_env"] == {"TOKEN": "**********"}
    assert "s3cret" not in payload.model_dump_json()


def test_a_relative_program_is_found_from_cwd(
    job_runner: JobRunner, shell: JobType, tmp_path: Path
) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(basename $(pwd))\n")
    script.chmod(0o755)

    run = job_runner.run(shell, {"argv": ["./hello.sh"], "cwd": str(tmp_path)})

    result = run.assert_completed()
    assert result["stdout"] == f"hello from {tmp_path.name}\n"


def test_stdin_is_passed_and_closed(job_runner: JobRunner, shell: JobType) -> None:
    code = "import sys; data = sys.stdin.read(); print(len(data), data.splitlines()[-1])"

    given = job_runner.run(shell, py(code, stdin="first\nlast line ✓\n")).assert_completed()
    none = job_runner.run(shell, py(code.replace("[-1]", ""))).assert_completed()

    assert given["stdout"] == "18 last line ✓\n"
    assert none["stdout"] == "0 []\n"


def test_large_stdin_that_the_command_never_reads_does_not_hang(
    job_runner: JobRunner, shell: JobType
) -> None:
    run = job_runner.run(shell, py("pass", stdin="x" * 4_000_000))

    run.assert_completed()
    assert run.duration < 5


def test_no_shell_expands_the_arguments(job_runner: JobRunner, shell: JobType) -> None:
    run = job_runner.run(shell, {"argv": ["echo", "$HOME", "*", "a;b"]})

    result = run.assert_completed()
    assert result["stdout"] == "$HOME * a;b\n"


def test_a_non_zero_exit_is_a_failed_attempt_naming_the_code_and_stderr(
    job_runner: JobRunner, shell: JobType
) -> None:
    data = {"argv": ["sh", "-c", "echo noise >&2; echo 'the real problem' >&2; exit 3"]}

    run = job_runner.run(shell, data)

    # shell.run has one attempt (and a client may not ask for more), so the failure is
    # final though the error itself is an ordinary, retryable one.
    error = run.assert_failed(error_type=CommandFailed, retryable=True)
    assert run.outcome.reason == "attempts exhausted: attempt failed"
    assert "'sh' exited with code 3" in error.message
    assert error.message.endswith("noise\nthe real problem")


def test_a_command_ended_by_a_signal_names_the_signal(
    job_runner: JobRunner, shell: JobType
) -> None:
    run = job_runner.run(shell, {"argv": ["sh", "-c", "kill -KILL $$"]})

    error = run.assert_failed(error_type=CommandFailed, retryable=True)
    assert error.message == "'sh' was ended by SIGKILL (no standard error)"


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_a_program_that_cannot_run_fails_without_retry(
    job_runner: JobRunner, shell: JobType, tmp_path: Path, kind: str
) -> None:
    program = tmp_path / "prog"
    if kind == "not executable":
        program.write_text("#!/bin/sh\necho hi\n")

    run = job_runner.run(shell, {"argv": [str(program)]})

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert str(program) in error.message


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_cwd_that_is_not_a_directory_fails_without_retry(
    job_runner: JobRunner, shell: JobType, tmp_path: Path, kind: str
) -> None:
    cwd = tmp_path / "cwd"
    if kind == "a file":
        cwd.write_text("")

    run = job_runner.run(shell, {"argv": ["true"], "cwd": str(cwd)})

    error = run.assert_failed(error_type=PermanentError)
    assert str(cwd) in error.message


def test_the_payload_timeout_stops_the_command_and_fails_the_attempt(
    job_runner: JobRunner, shell: JobType
) -> None:
    run = job_runner.run(shell, {"argv": ["sleep", "30"], "timeout": 0.3})

    error = run.assert_failed(error_type=CommandTimeout, retryable=True)
    assert error.message == "'sleep' ran past its 0.3 s timeout and was stopped"
    assert 0.3 <= run.duration < 2
    assert run.token_reason is None


def test_cancel_stops_a_running_command_promptly(job_runner: JobRunner, shell: JobType) -> None:
    run = job_runner.run(shell, {"argv": ["sleep", "30"]}, cancel_after=0.2)

    run.assert_cancelled()
    assert run.duration < 0.2 + 0.8  # a missed wake-up would take the whole 30 s


def test_a_command_ignoring_sigterm_is_killed_after_the_grace(
    job_runner: JobRunner, shell: JobType
) -> None:
    data = {"argv": ["sh", "-c", 'trap "" TERM; sleep 30'], "kill_grace": 0.5}

    # The kit's grace is made long so the bound below, not the kit, judges the kill_grace.
    run = job_runner.run(shell, data, cancel_after=0.2, grace=5)

    run.assert_cancelled()
    assert 0.2 + 0.5 <= run.duration < 0.2 + 0.5 + 1


def test_the_grace_lets_a_background_process_finish_and_ends_when_the_group_has(
    job_runner: JobRunner, shell: JobType, tmp_path: Path
) -> None:
    # The shell dies on SIGTERM at once; its child takes 0.3 s to clean up, then exits.
    ready, cleaned = tmp_path / "ready", tmp_path / "cleaned"
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(0.3)\n"
        "    pathlib.Path(sys.argv[2]).write_text('clean')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "pathlib.Path(sys.argv[1]).write_text('ready')\n"
        "time.sleep(30)\n"
    )
    argv = ["sh", "-c", '"$0" -c "$1" "$2" "$3" & wait', PY, child, str(ready), str(cleaned)]
    running = job_runner.start(shell, {"argv": argv, "kill_grace": 10}, grace=10)
    wait_for(ready.exists, "the child to be ready")
    started = time.monotonic()
    running.cancel()
    run = running.result()
    elapsed = time.monotonic() - started

    run.assert_cancelled()
    assert cleaned.read_text() == "clean"
    assert elapsed < 5  # far less than the 10 s grace: nothing was left to wait for


def test_the_jobs_own_timeout_is_reported_as_a_timeout(
    job_runner: JobRunner, shell: JobType
) -> None:
    run = job_runner.run(shell, {"argv": ["sleep", "30"]}, timeout=0.2)

    run.assert_timed_out()
    run.assert_failed(error_type="Timeout", retryable=True)


def test_a_token_fired_before_the_start_runs_nothing(
    job_runner: JobRunner, shell: JobType, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    run = job_runner.run(shell, {"argv": ["touch", str(marker)]}, cancel_after=0)

    run.assert_cancelled()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("end", "fields", "state"),
    [
        ("exit 0", {}, State.COMPLETED),
        ("exit 4", {}, State.FAILED),
        ("wait", {"timeout": 0.5}, State.FAILED),
        ("wait", {}, State.CANCELLED),
    ],
    ids=["success", "failure", "timeout", "cancel"],
)
def test_no_process_of_the_group_outlives_the_job(
    job_runner: JobRunner,
    shell: JobType,
    tmp_path: Path,
    end: str,
    fields: dict[str, Any],
    state: State,
) -> None:
    pids = tmp_path / "pids"
    running = job_runner.start(shell, {"argv": ["sh", "-c", SPAWN + end, str(pids)], **fields})
    if state is State.CANCELLED:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, "the pids")
        running.cancel()

    assert running.result().state is state
    assert_no_orphans(pids)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"argv": []},
        {"argv": "ls -l"},
        {"argv": [""]},
        {"argv": ["echo", "a\0b"]},
        {"argv": ["ls"], "shell": True},
        {"argv": ["ls"], "env": {"A=B": "x"}},
        {"argv": ["ls"], "env": {"": "x"}},
        {"argv": ["ls"], "env": {"A": 1}},
        {"argv": ["ls"], "secret_env": {"A=B": "x"}},
        {"argv": ["ls"], "secret_env": {"A": "nul\0"}},
        {"argv": ["ls"], "secret_env": {"A": 1}},
        {"argv": ["ls"], "env": {"A": "x"}, "secret_env": {"A": "y"}},
        {"argv": ["ls"], "cwd": ""},
        {"argv": ["ls"], "timeout": 0},
        {"argv": ["ls"], "timeout": 86_401},
        {"argv": ["ls"], "timeout": float("inf")},
        {"argv": ["ls"], "tail_bytes": -1},
        {"argv": ["ls"], "tail_bytes": 1_048_577},
        {"argv": ["ls"], "kill_grace": -1},
        {"argv": ["ls"], "kill_grace": 301},
    ],
)
def test_payload_validation_rejects_bad_input(
    job_runner: JobRunner, shell: JobType, data: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        job_runner.run(shell, data)


def test_bad_secret_env_is_refused_without_showing_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        ShellPayload.model_validate({"argv": ["ls"], "secret_env": {"TOKEN": "s3cret\0"}})
    [error] = caught.value.errors(include_url=False, include_input=False, include_context=False)
    assert error["msg"] == "Value error, the value of 'TOKEN' must not contain a NUL character"
    assert "s3cret" not in str(error)


def test_the_job_type_and_its_schema(shell: JobType) -> None:
    assert (shell.name, shell.max_attempts, shell.timeout) == ("shell.run", 1, None)
    assert shell.max_attempts_limit == 1
    assert shell.description == inspect.getdoc(shell.execute)
    properties = shell.payload_schema()["properties"]
    assert set(properties) == {
        "argv",
        "env",
        "secret_env",
        "cwd",
        "timeout",
        "tail_bytes",
        "kill_grace",
        "stdin",
    }
    assert all(p.get("description") for p in properties.values())
    assert shell.payload_schema()["additionalProperties"] is False


def test_the_errors_survive_pickling() -> None:
    failed = CommandFailed("make", returncode=-15, stderr_tail="oops\n")
    timeout = CommandTimeout("make", timeout=2.5)

    failed2, timeout2 = pickle.loads(pickle.dumps((failed, timeout)))

    assert (str(failed2), failed2.signal, failed2.exit_code) == (str(failed), 15, None)
    assert (str(timeout2), timeout2.timeout) == (
        "'make' ran past its 2.5 s timeout and was stopped",
        2.5,
    )


def test_the_distribution_registers_shell_run_of_its_plugin_module() -> None:
    found = {
        job_type.name: job_type.execute for job_type in check_distribution("orchestrator-shell")
    }
    assert found == {"shell.run": plugin.run}
