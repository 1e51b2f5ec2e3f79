"""``shell.run`` with real processes, classified as the worker does (no Redis, no broker)."""

from __future__ import annotations

import inspect
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from orchestrator_shell import CommandFailed, CommandTimeout
from orchestrator_shell.plugin import register_job_types
from pydantic import ValidationError

from orchestrator_core import CancellationToken, JobType, State, load_plugins
from orchestrator_core.attempt import Outcome, check_result, classify

PY = sys.executable


def job_type() -> JobType:
    (jt,) = register_job_types()
    return jt


def attempt(data: dict[str, Any], token: CancellationToken | None = None) -> Outcome:
    """Validate ``data`` and run one attempt, named as the worker names it."""
    jt = job_type()
    payload = jt.validate_payload(data)
    return check_result(classify(jt, payload, token or CancellationToken("job-1", 1)))


def py(code: str, **fields: Any) -> dict[str, Any]:
    return {"argv": [PY, "-c", code], **fields}


@contextmanager
def fire_after(
    token: CancellationToken, seconds: float, reason: str = "cancelled"
) -> Iterator[None]:
    timer = threading.Timer(seconds, token.cancel, args=(reason,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


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


def test_success_returns_the_exit_code_and_both_tails() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"

    outcome = attempt(py(code))

    assert outcome.state is State.COMPLETED
    assert outcome.result == {
        "exit_code": 0,
        "stdout": "out\n",
        "stderr": "err\n",
        "stdout_truncated": False,
        "stderr_truncated": False,
    }


def test_a_megabyte_of_output_keeps_only_the_tail() -> None:
    code = "import sys; sys.stdout.write('x' * 1_048_576 + 'END'); sys.stderr.write('e' * 50)"

    outcome = attempt(py(code, tail_bytes=100))

    assert outcome.state is State.COMPLETED
    assert outcome.result["stdout"] == "x" * 97 + "END"
    assert outcome.result["stdout_truncated"] is True
    assert outcome.result["stderr"] == "e" * 50
    assert outcome.result["stderr_truncated"] is False


def test_tail_bytes_zero_keeps_nothing_and_says_so() -> None:
    outcome = attempt(py("print('hello')", tail_bytes=0))

    assert outcome.state is State.COMPLETED
    assert (outcome.result["stdout"], outcome.result["stdout_truncated"]) == ("", True)
    assert (outcome.result["stderr"], outcome.result["stderr_truncated"]) == ("", False)


def test_output_is_decoded_as_utf8_without_a_half_character_at_the_cut() -> None:
    # 'é' is two bytes, so a 101-byte tail starts in the middle of one.
    code = "import sys; sys.stdout.buffer.write('é'.encode() * 1000 + b'\\xff!')"

    outcome = attempt(py(code, tail_bytes=101))

    assert outcome.result["stdout"] == "é" * 49 + "\ufffd!"


def test_env_is_added_to_the_workers_and_cwd_is_honoured(tmp_path: Path) -> None:
    code = "import os; print(os.environ['SHELL_TEST_VAR'], 'PATH' in os.environ, os.getcwd())"

    outcome = attempt(py(code, env={"SHELL_TEST_VAR": "a value"}, cwd=str(tmp_path)))

    assert outcome.state is State.COMPLETED
    assert outcome.result["stdout"] == f"a value True {tmp_path.resolve()}\n"


def test_a_relative_program_is_found_from_cwd(tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(basename $(pwd))\n")
    script.chmod(0o755)

    outcome = attempt({"argv": ["./hello.sh"], "cwd": str(tmp_path)})

    assert outcome.result["stdout"] == f"hello from {tmp_path.name}\n"


def test_stdin_is_passed_and_closed() -> None:
    code = "import sys; data = sys.stdin.read(); print(len(data), data.splitlines()[-1])"

    outcome = attempt(py(code, stdin="first\nlast line ✓\n"))

    assert outcome.result["stdout"] == "18 last line ✓\n"
    assert attempt(py(code.replace("[-1]", ""))).result["stdout"] == "0 []\n"


def test_large_stdin_that_the_command_never_reads_does_not_hang() -> None:
    started = time.monotonic()

    outcome = attempt(py("pass", stdin="x" * 4_000_000))

    assert outcome.state is State.COMPLETED
    assert time.monotonic() - started < 5


def test_no_shell_expands_the_arguments() -> None:
    outcome = attempt({"argv": ["echo", "$HOME", "*", "a;b"]})

    assert outcome.result["stdout"] == "$HOME * a;b\n"


def test_a_non_zero_exit_is_a_failed_attempt_naming_the_code_and_stderr() -> None:
    outcome = attempt({"argv": ["sh", "-c", "echo noise >&2; echo 'the real problem' >&2; exit 3"]})

    assert outcome.state is State.RETRYING
    assert outcome.reason == "attempt failed"
    assert outcome.error is not None
    assert outcome.error.type == "CommandFailed"
    assert outcome.error.retryable is True
    assert "'sh' exited with code 3" in outcome.error.message
    assert outcome.error.message.endswith("noise\nthe real problem")


def test_a_command_ended_by_a_signal_names_the_signal() -> None:
    outcome = attempt({"argv": ["sh", "-c", "kill -KILL $$"]})

    assert outcome.state is State.RETRYING
    assert outcome.error is not None
    assert outcome.error.message == "'sh' was ended by SIGKILL (no standard error)"


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_a_program_that_cannot_run_fails_without_retry(tmp_path: Path, kind: str) -> None:
    program = tmp_path / "prog"
    if kind == "not executable":
        program.write_text("#!/bin/sh\necho hi\n")

    outcome = attempt({"argv": [str(program)]})

    assert outcome.state is State.FAILED
    assert outcome.error is not None
    assert outcome.error.type == "PermanentError"
    assert outcome.error.retryable is False
    assert str(program) in outcome.error.message


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_cwd_that_is_not_a_directory_fails_without_retry(tmp_path: Path, kind: str) -> None:
    cwd = tmp_path / "cwd"
    if kind == "a file":
        cwd.write_text("")

    outcome = attempt({"argv": ["true"], "cwd": str(cwd)})

    assert outcome.state is State.FAILED
    assert outcome.error is not None
    assert outcome.error.type == "PermanentError"
    assert str(cwd) in outcome.error.message


def test_the_payload_timeout_stops_the_command_and_fails_the_attempt() -> None:
    started = time.monotonic()

    outcome = attempt({"argv": ["sleep", "30"], "timeout": 0.3})

    elapsed = time.monotonic() - started
    assert outcome.state is State.RETRYING
    assert outcome.error is not None
    assert outcome.error.type == "CommandTimeout"
    assert outcome.error.message == "'sleep' ran past its 0.3 s timeout and was stopped"
    assert 0.3 <= elapsed < 2


def test_cancel_stops_a_running_command_promptly() -> None:
    token = CancellationToken("job-1", 1)
    started = time.monotonic()
    with fire_after(token, 0.2):
        outcome = attempt({"argv": ["sleep", "30"]}, token)
    elapsed = time.monotonic() - started

    assert outcome.state is State.CANCELLED
    assert elapsed < 0.2 + 0.8  # a missed wake-up would take the whole 30 s


def test_a_command_ignoring_sigterm_is_killed_after_the_grace() -> None:
    token = CancellationToken("job-1", 1)
    started = time.monotonic()
    with fire_after(token, 0.2):
        outcome = attempt(
            {"argv": ["sh", "-c", 'trap "" TERM; sleep 30'], "kill_grace": 0.5}, token
        )
    elapsed = time.monotonic() - started

    assert outcome.state is State.CANCELLED
    assert 0.2 + 0.5 <= elapsed < 0.2 + 0.5 + 1


def test_the_grace_lets_a_background_process_finish_and_ends_when_the_group_has(
    tmp_path: Path,
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
    token = CancellationToken("job-1", 1)
    with ThreadPoolExecutor(1) as pool:
        future: Future[Outcome] = pool.submit(attempt, {"argv": argv, "kill_grace": 10}, token)
        wait_for(ready.exists, "the child to be ready")
        started = time.monotonic()
        token.cancel()
        outcome = future.result(timeout=15)
    elapsed = time.monotonic() - started

    assert outcome.state is State.CANCELLED
    assert cleaned.read_text() == "clean"
    assert elapsed < 5  # far less than the 10 s grace: nothing was left to wait for


def test_the_jobs_own_timeout_is_reported_as_a_timeout() -> None:
    token = CancellationToken("job-1", 1)
    with fire_after(token, 0.2, reason="timeout"):
        outcome = attempt({"argv": ["sleep", "30"]}, token)

    assert outcome.state is State.RETRYING
    assert outcome.reason == "timeout"
    assert outcome.error is not None
    assert outcome.error.type == "Timeout"


def test_a_token_fired_before_the_start_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    token = CancellationToken("job-1", 1)
    token.cancel()

    outcome = attempt({"argv": ["touch", str(marker)]}, token)

    assert outcome.state is State.CANCELLED
    assert not marker.exists()


@pytest.mark.parametrize(
    ("end", "fields", "state"),
    [
        ("exit 0", {}, State.COMPLETED),
        ("exit 4", {}, State.RETRYING),
        ("wait", {"timeout": 0.5}, State.RETRYING),
        ("wait", {}, State.CANCELLED),
    ],
    ids=["success", "failure", "timeout", "cancel"],
)
def test_no_process_of_the_group_outlives_the_job(
    tmp_path: Path, end: str, fields: dict[str, Any], state: State
) -> None:
    pids = tmp_path / "pids"
    data = {"argv": ["sh", "-c", SPAWN + end, str(pids)], **fields}
    token = CancellationToken("job-1", 1)

    def cancel_once_started() -> None:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, "the pids")
        token.cancel()

    canceller = threading.Thread(target=cancel_once_started)
    if state is State.CANCELLED:
        canceller.start()
    outcome = attempt(data, token)
    if state is State.CANCELLED:
        canceller.join()

    assert outcome.state is state
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
def test_payload_validation_rejects_bad_input(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        job_type().validate_payload(data)


def test_the_job_type_and_its_schema() -> None:
    jt = job_type()

    assert (jt.name, jt.max_attempts, jt.timeout) == ("shell.run", 1, None)
    assert jt.description == inspect.getdoc(jt.execute)
    properties = jt.payload_schema()["properties"]
    assert set(properties) == {
        "argv",
        "env",
        "cwd",
        "timeout",
        "tail_bytes",
        "kill_grace",
        "stdin",
    }
    assert all(p.get("description") for p in properties.values())
    assert jt.payload_schema()["additionalProperties"] is False


def test_the_errors_survive_pickling() -> None:
    failed = CommandFailed("make", returncode=-15, stderr_tail="oops\n")
    timeout = CommandTimeout("make", timeout=2.5)

    failed2, timeout2 = pickle.loads(pickle.dumps((failed, timeout)))

    assert (str(failed2), failed2.signal, failed2.exit_code) == (str(failed), 15, None)
    assert (str(timeout2), timeout2.timeout) == (
        "'make' ran past its 2.5 s timeout and was stopped",
        2.5,
    )


def test_the_entry_point_is_discovered_from_the_installed_distribution() -> None:
    plugins = load_plugins(allow=["shell"])

    assert plugins.report.failed == (), (
        "install the plugin first: pip install -e plugins/shell",
        plugins.report.failed,
    )
    assert set(plugins.job_types) == {"shell.run"}
    registered = plugins.job_types["shell.run"]
    assert registered.plugin.distribution == "orchestrator-shell"
    assert registered.plugin.value == "orchestrator_shell.plugin"
