"""The installed ``orchestrator`` client commands against a real API and a real worker.

The module starts one API process and one worker (concurrency 1, so a test that leaves
a long job running would hold up the rest: such tests cancel in ``finally``), both under
a prefix of their own that is deleted from Redis and RabbitMQ afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, delete_keys
from processes import stop_group
from services import require_broker, require_redis

from orchestrator_client import ApiError, Client, WaitTimeoutError
from orchestrator_core.settings import Settings, load_settings

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
DEMO_TYPES = ("demo.echo", "demo.sleep", "demo.fail")
DOCUMENT_FIELDS = {
    "id",
    "type",
    "state",
    "payload",
    "attempts",
    "max_attempts",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "cancel_requested",
    "result",
    "error",
    "progress",
    "history",
    "priority",
    "concurrency_key",
    "not_before",
    "waiting",
    "rerun_of",
    "schedule",
}


# --- Processes -------------------------------------------------------------------


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ORCHESTRATOR_ variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return {**env, **settings}


def start(command: list[str], env: dict[str, str], log: Path) -> Service:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ORCHESTRATOR), *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(process, log)


def wait_until(service: Service, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if service.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start:\n{service.text()}")
        time.sleep(0.05)


def stop(service: Service) -> None:
    """SIGTERM to the service's process group; SIGKILL if it is still there after 10 s."""
    stop_group(service.process, grace=10)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_api(settings: Settings, log: Path, **extra: str) -> tuple[Service, str]:
    port = free_port()
    command = ["api", "--host", "127.0.0.1", "--port", str(port)]
    return start(command, service_env(settings, **extra), log), f"http://127.0.0.1:{port}"


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    return clean_env(
        ORCHESTRATOR_PREFIX=settings.prefix,
        ORCHESTRATOR_PLUGINS="demo",
        ORCHESTRATOR_REDIS_URL=settings.redis_url,
        ORCHESTRATOR_BROKER_URL=settings.broker_url,
        **extra,
    )


def delete_prefix(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        delete_keys(client, settings.prefix)
    finally:
        client.close()
    queues = [f"{settings.prefix}.{name}" for name in DEMO_TYPES]
    delete_broker_objects(settings.broker_url, settings.prefix, queues)


@pytest.fixture(scope="module")
def stack_settings() -> Iterator[Settings]:
    """A prefix of this module's own on the machine's Redis and RabbitMQ, deleted afterwards."""
    configured = load_settings(prefix=f"test-{uuid.uuid4().hex[:12]}")
    probe = redis.Redis.from_url(configured.redis_url, socket_connect_timeout=2)
    try:
        require_redis(probe, configured.redis_url)
    finally:
        probe.close()
    require_broker(configured.broker_url)
    yield configured
    delete_prefix(configured)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-client")


@pytest.fixture(scope="module")
def api(stack_settings: Settings, logs: Path) -> Iterator[str]:
    """The URL of an open API, with a worker (concurrency 1) running its jobs."""
    worker_command = ["--log-level", "INFO", "worker", "--concurrency", "1"]
    worker = start(worker_command, service_env(stack_settings), logs / "worker.log")
    try:
        # Both start at once: each start-up is mostly importing.
        api, url = start_api(stack_settings, logs / "api.log")
        try:
            wait_until(worker, lambda: " ready." in worker.text(), "the worker")
            wait_until(api, lambda: healthy(url), "the API")
            yield url
        finally:
            stop(api)
    finally:
        stop(worker)


@pytest.fixture(scope="module")
def keyed_api(stack_settings: Settings, logs: Path, api: str) -> Iterator[str]:
    """The URL of a second API, on the same jobs and worker, that requires the key k1 or k2."""
    service, url = start_api(stack_settings, logs / "keyed-api.log", ORCHESTRATOR_API_KEYS="k1,k2")
    try:
        wait_until(service, lambda: healthy(url), "the API with keys")
        yield url
    finally:
        stop(service)


# --- Helpers ---------------------------------------------------------------------


def cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrator ARGS`` with the API at ``url`` and nothing else configured."""
    return finish(spawn(url, *args, **env))


def cli_many(url: str, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands side by side: each costs an interpreter start."""
    return [finish(process) for process in [spawn(url, *command) for command in commands]]


def spawn(url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(ORCHESTRATOR), *args],
        env=clean_env(ORCHESTRATOR_API_URL=url, **env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def submitted(url: str, type_name: str, payload: dict[str, Any]) -> str:
    """Submit straight to the API, for tests about the other commands."""
    response = httpx.post(f"{url}/jobs", json={"type": type_name, "payload": payload}, timeout=10)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def poll(url: str, job_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The job's document once ``until`` holds for it (read directly, to keep tests quick)."""
    deadline = time.monotonic() + 20
    while True:
        job: dict[str, Any] = httpx.get(f"{url}/jobs/{job_id}", timeout=5).json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job}"
        time.sleep(0.02)


def cancel_quietly(url: str, job_id: str) -> None:
    """Leave the single worker slot free for the next test, whatever happened in this one."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.delete(f"{url}/jobs/{job_id}", timeout=5)


def assert_one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    return line


# --- Submitting and waiting -------------------------------------------------------


def test_submit_wait_prints_each_change_then_the_result(api: str) -> None:
    done = cli(api, "submit", "demo.echo", '{"message": "hello"}', "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    job_id = lines[0].split()[1]
    assert lines[0] == f"job {job_id}  demo.echo  CREATED  attempts 0/1"
    assert lines[-2:] == [
        f"job {job_id}  demo.echo  COMPLETED  attempts 1/1",
        'result: {"message": "hello", "data": null}',
    ]
    assert done.stderr == ""
    assert poll(api, job_id, lambda job: True)["state"] == "COMPLETED"


def test_submit_wait_shows_progress_as_it_changes(api: str) -> None:
    done = cli(api, "submit", "demo.sleep", '{"seconds": 1.2, "steps": 3}', "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    progress = [line for line in lines if "  RUNNING  " in line and "  progress " in line]
    assert progress, lines
    assert all(line.endswith(("33% step 1/3", "67% step 2/3")) for line in progress), progress
    assert len(lines) == len(set(lines)), "a line for each change, not for each poll"
    assert lines[-2].endswith("  demo.sleep  COMPLETED  attempts 1/3")
    assert lines[-1] == 'result: {"slept": 1.2}'


def test_submit_wait_of_a_permanent_failure_exits_1_with_the_error(api: str) -> None:
    payload = '{"times": 0, "permanent": true, "message": "disk on fire"}'
    done = cli(api, "submit", "demo.fail", payload, "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-2].endswith("  demo.fail  FAILED  attempts 1/5")
    assert lines[-1] == "error: PermanentError: disk on fire (not retryable)"
    assert not any(line.startswith("result:") for line in lines)


def test_interrupted_wait_says_the_job_carries_on(api: str) -> None:
    process = subprocess.Popen(
        [str(ORCHESTRATOR), "submit", "demo.sleep", '{"seconds": 30}', "--wait"],
        env=clean_env(ORCHESTRATOR_API_URL=api),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    job_id = process.stdout.readline().split()[1]
    try:
        poll(api, job_id, lambda job: job["state"] == "RUNNING")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 130
        assert err == f"orchestrator: stopped waiting; job {job_id} carries on\n"
        assert poll(api, job_id, lambda job: True)["state"] == "RUNNING"
    finally:
        cancel_quietly(api, job_id)
        if process.poll() is None:
            process.kill()
            process.communicate()


# --- Cancelling --------------------------------------------------------------------


def test_cancel_a_running_job_then_get_shows_it_cancelled(api: str) -> None:
    job_id = submitted(api, "demo.sleep", {"seconds": 60, "steps": 60})
    try:
        poll(api, job_id, lambda job: job["state"] == "RUNNING")
        done = cli(api, "cancel", job_id)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"job {job_id}  demo.sleep  RUNNING  attempts 1/3")
        assert done.stdout.rstrip().endswith("(cancel requested)")
        poll(api, job_id, lambda job: job["state"] == "CANCELLED")
    finally:
        cancel_quietly(api, job_id)
    shown = cli(api, "get", job_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"job {job_id}  demo.sleep  CANCELLED  attempts 1/3"
    assert lines[1] == 'payload: {"seconds": 60.0, "steps": 60}'
    history = lines[lines.index("history:") + 1 :]
    assert [line.split()[1:] for line in history] == [
        ["CREATED", "attempt", "0"],
        ["RUNNING", "attempt", "1"],
        ["CANCELLED", "attempt", "1", "cancelled"],
    ]


def test_cancel_of_a_finished_job_exits_1_and_still_prints_it(api: str) -> None:
    job_id = submitted(api, "demo.echo", {"message": "done already"})
    poll(api, job_id, lambda job: job["state"] == "COMPLETED")
    done, as_json = cli_many(api, ["cancel", job_id], ["cancel", job_id, "--json"])
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"job {job_id}  demo.echo  COMPLETED  attempts 1/1",
        'result: {"message": "done already", "data": null}',
    ]
    assert done.stderr == f"orchestrator: job {job_id} had already COMPLETED; not cancelled\n"
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["state"] == "COMPLETED"


# --- JSON for scripts ----------------------------------------------------------------


def test_json_output_is_the_api_document(api: str) -> None:
    args = ["submit", "demo.echo", '{"message": "for scripts"}', "--json"]
    keyed = [*args, "--max-attempts", "1", "--idempotency-key", uuid.uuid4().hex]
    first = cli(api, *keyed)
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout)
    assert set(job) == DOCUMENT_FIELDS
    assert (job["type"], job["payload"]) == ("demo.echo", {"message": "for scripts", "data": None})
    assert job["max_attempts"] == 1
    assert job["history"][0]["state"] == "CREATED"

    repeat = cli(api, *keyed)
    assert repeat.returncode == 0, repeat.stderr
    assert json.loads(repeat.stdout)["id"] == job["id"]

    poll(api, job["id"], lambda doc: doc["state"] == "COMPLETED")
    got = cli(api, "get", job["id"], "--json")
    assert got.returncode == 0, got.stderr
    document = json.loads(got.stdout)
    assert document == httpx.get(f"{api}/jobs/{job['id']}", timeout=5).json()
    assert document["result"] == {"message": "for scripts", "data": None}

    waited = cli(api, *args, "--wait")
    assert waited.returncode == 0, waited.stderr
    final = json.loads(waited.stdout)  # one document and nothing else
    assert (final["state"], final["result"]["message"]) == ("COMPLETED", "for scripts")
    assert final["id"] != job["id"]


def test_jobs_lists_newest_first_a_page_at_a_time(api: str) -> None:
    ids = [submitted(api, "demo.echo", {"message": f"list {i}"}) for i in range(3)]
    first = httpx.get(f"{api}/jobs", params={"type": "demo.echo", "limit": 2}, timeout=5).json()
    for job_id in ids:
        poll(api, job_id, lambda job: job["state"] == "COMPLETED")
    listed, following, table, completed = cli_many(
        api,
        ["jobs", "--type", "demo.echo", "--limit", "2", "--json"],
        ["jobs", "--type", "demo.echo", "--limit", "1", "--cursor", first["next_cursor"], "--json"],
        ["jobs", "--type", "demo.echo", "--limit", "2"],
        ["jobs", "--type", "demo.echo", "--state", "completed", "--json"],
    )
    for done in (listed, following, table, completed):
        assert done.returncode == 0, done.stderr
    page = json.loads(listed.stdout)
    assert set(page) == {"items", "next_cursor"}
    assert [job["id"] for job in page["items"]] == [ids[2], ids[1]]
    assert {job["type"] for job in page["items"]} == {"demo.echo"}
    assert page["next_cursor"] == first["next_cursor"]

    assert [job["id"] for job in json.loads(following.stdout)["items"]] == [ids[0]]

    rows = table.stdout.splitlines()
    assert rows[0].split() == ["ID", "TYPE", "STATE", "ATTEMPTS", "CREATED"]
    assert [row.split()[:4] for row in rows[1:3]] == [
        [ids[2], "demo.echo", "COMPLETED", "1/1"],
        [ids[1], "demo.echo", "COMPLETED", "1/1"],
    ]
    assert rows[3] == f"more: --cursor {page['next_cursor']}"

    items = json.loads(completed.stdout)["items"]
    assert set(ids) <= {job["id"] for job in items}
    assert {job["state"] for job in items} == {"COMPLETED"}


def printed_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines ``process`` prints, as they come, read on a thread of their own."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def lines_about(
    lines: queue.Queue[str], job_ids: set[str], until: str, timeout: float = 20
) -> list[str]:
    """The lines that name one of ``job_ids``, up to the first that holds ``until``.

    :raises queue.Empty: when ``timeout`` seconds pass first.
    """
    found: list[str] = []
    deadline = time.monotonic() + timeout
    while not found or until not in found[-1]:
        line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if any(job_id in line for job_id in job_ids):
            found.append(line)
    return found


def test_events_prints_each_transition_as_it_happens(api: str) -> None:
    follower = spawn(api, "events", "--type", "demo.echo")
    raw = spawn(api, "events", "--state", "completed", "--json")
    try:
        shown, shown_raw = printed_lines(follower), printed_lines(raw)
        # Each prints what happens once it is subscribed: wait until a job reaches both.
        probes = {submitted(api, "demo.echo", {"message": "probe"})}
        waiting = {"-> COMPLETED": shown, "COMPLETED": shown_raw}
        deadline = time.monotonic() + 20
        while waiting:
            for until, lines in list(waiting.items()):
                with contextlib.suppress(queue.Empty):
                    lines_about(lines, probes, until=until, timeout=0.5)
                    del waiting[until]
            assert time.monotonic() < deadline, "the events command printed nothing"
            probes.add(submitted(api, "demo.echo", {"message": "probe"}))
        job_id = submitted(api, "demo.echo", {"message": "followed"})
        lines = lines_about(shown, {job_id}, until="-> COMPLETED")
        [completed] = lines_about(shown_raw, {job_id}, until="COMPLETED")
        for process in (follower, raw):
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
            assert process.returncode == 130, err
            assert err == "orchestrator: interrupted\n"
    finally:
        for process in (follower, raw):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert [line.split()[1:6] for line in lines] == [
        [job_id, "demo.echo", "-", "->", "CREATED"],
        [job_id, "demo.echo", "CREATED", "->", "RUNNING"],
        [job_id, "demo.echo", "RUNNING", "->", "COMPLETED"],
    ]
    event = json.loads(completed)
    assert (event["job_id"], event["state"], event["from"]) == (job_id, "COMPLETED", "RUNNING")
    assert set(event) == {"id", "job_id", "type", "state", "from", "at", "attempt", "seq", "reason"}


# --- Errors ------------------------------------------------------------------------


def test_submit_batch_sends_a_file_of_jobs_in_batches_in_order(api: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        json.dumps({"type": "demo.echo", "payload": {"message": f"m{n}"}}) for n in range(1005)
    ]
    jobs.write_text("\n".join(lines[:500]) + "\n\n" + "\n".join(lines[500:]) + "\n")

    done = cli(api, "submit", "--batch", str(jobs), "--json")

    assert done.returncode == 0, done.stderr
    documents = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["payload"]["message"] for d in documents] == [f"m{n}" for n in range(1005)]
    assert len({d["id"] for d in documents}) == 1005
    assert poll(api, documents[-1]["id"], lambda job: job["state"] == "COMPLETED")


def test_submit_batch_reads_standard_input_and_prints_a_line_per_job(api: str) -> None:
    body = "".join(
        json.dumps({"type": "demo.echo", "payload": {"message": f"s{n}"}}) + "\n" for n in range(3)
    )
    process = spawn(api, "submit", "--batch", "-")
    out, err = process.communicate(body, timeout=60)
    assert process.returncode == 0, err
    assert [line.split()[2] for line in out.splitlines()] == ["demo.echo"] * 3
    assert err.strip() == "submitted 3 job(s)"


def test_submit_batch_of_a_bad_line_is_a_usage_error_before_any_request(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"type": "demo.echo", "payload": {}}\n[1, 2]\n')
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        done = cli(url, "submit", "--batch", str(jobs))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert done.returncode == 2
    assert "line 2: a job is a JSON object" in done.stderr.splitlines()[-1]


def test_submit_batch_with_an_invalid_job_names_it_and_creates_none(
    api: str, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"type": "demo.echo", "payload": {"message": "kept?"}}\n'
        '{"type": "demo.sleep", "payload": {"seconds": -1}}\n'
    )
    done = cli(api, "submit", "--batch", str(jobs))
    assert done.returncode == 1
    assert "jobs.1.payload.seconds" in assert_one_line_error(done)
    listed = httpx.get(f"{api}/jobs", params={"limit": 500}, timeout=10).json()["items"]
    assert all(job["payload"].get("message") != "kept?" for job in listed)


def test_unknown_type_exits_1_listing_the_known_types(api: str) -> None:
    done = cli(api, "submit", "demo.nope", "{}")
    assert done.returncode == 1
    line = assert_one_line_error(done)
    assert line.startswith("orchestrator: error: 422 ")
    assert "'demo.nope'" in line
    assert all(name in line for name in DEMO_TYPES), line
    assert done.stdout == ""


def test_invalid_payload_from_the_api_names_the_fields(api: str) -> None:
    done = cli(api, "submit", "demo.sleep", '{"seconds": -1, "extra": 1}')
    assert done.returncode == 1
    line = assert_one_line_error(done)
    assert line.startswith("orchestrator: error: 422 payload.seconds: ")
    assert "payload.extra: " in line


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "must be a JSON object {...}, not an array"),
    ],
)
def test_payload_that_is_not_a_json_object_is_a_usage_error_before_any_request(
    payload: str, message: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        done = cli(url, "submit", "demo.echo", payload)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"orchestrator submit: error: argument PAYLOAD_JSON: {message}")


def test_unknown_id_exits_1_with_404(api: str) -> None:
    job_id = str(uuid.uuid4())
    for done in cli_many(api, ["get", job_id], ["cancel", job_id]):
        assert done.returncode == 1
        assert assert_one_line_error(done) == f"orchestrator: error: 404 no job with id '{job_id}'"
        assert done.stdout == ""


def test_unreachable_api_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for done in cli_many(url, ["get", str(uuid.uuid4())], ["submit", "demo.echo", "{}", "--wait"]):
        assert done.returncode == 1
        line = assert_one_line_error(done)
        assert line.startswith(f"orchestrator: error: the API at {url} is unreachable: ")
        assert done.stdout == ""


def test_api_url_that_is_not_a_url_is_a_settings_error() -> None:
    done = cli("localhost:8000", "jobs")
    assert done.returncode == 2
    assert "ORCHESTRATOR_API_URL" in assert_one_line_error(done)


def test_api_key_is_sent_when_set(keyed_api: str) -> None:
    anonymous, wrong, keyed = [
        finish(process)
        for process in [
            spawn(keyed_api, "jobs"),
            spawn(keyed_api, "jobs", ORCHESTRATOR_API_KEY="k3"),
            spawn(
                keyed_api,
                "submit",
                "demo.echo",
                '{"message": "keyed"}',
                "--wait",
                ORCHESTRATOR_API_KEY="k2",
            ),
        ]
    ]
    assert anonymous.returncode == 1
    line = assert_one_line_error(anonymous)
    assert line.startswith("orchestrator: error: 401 ")
    assert "ORCHESTRATOR_API_KEY" in line

    assert wrong.returncode == 1
    assert assert_one_line_error(wrong).startswith("orchestrator: error: 401 ")

    assert keyed.returncode == 0, keyed.stdout + keyed.stderr
    assert keyed.stdout.splitlines()[-1] == 'result: {"message": "keyed", "data": null}'


# --- The client itself, on a stand-in transport --------------------------------------


def stand_in(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    return Client("http://api.test:8000", api_key="k1", transport=httpx.MockTransport(handler))


def test_client_timeout_is_an_unreachable_api_error() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with stand_in(hang) as client, pytest.raises(ApiError) as caught:
        client.get("some-id")
    assert caught.value.status is None
    assert str(caught.value).startswith("the API at http://api.test:8000 is unreachable: ")


def test_client_error_that_is_not_the_apis_json_keeps_its_status() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>\n<h1>Bad Gateway</h1>\n</html>")

    with stand_in(proxy) as client, pytest.raises(ApiError) as caught:
        client.jobs()
    assert caught.value.status == 502
    assert str(caught.value) == "502 <html> <h1>Bad Gateway</h1> </html>"


def test_client_sends_key_and_options_and_quotes_ids() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201 if request.method == "POST" else 200, json={"id": "x"})

    with stand_in(record) as client:
        client.submit("demo.echo", {"message": "m"}, max_attempts=2, idempotency_key="key-1")
        client.get("a/b?c")
    post, get = seen
    assert post.headers["Authorization"] == "Bearer k1"
    assert post.headers["Idempotency-Key"] == "key-1"
    body = {"type": "demo.echo", "payload": {"message": "m"}, "max_attempts": 2}
    assert json.loads(post.content) == body
    assert get.url.raw_path == b"/jobs/a%2Fb%3Fc"


def job_doc(state: str, history: int, **fields: Any) -> dict[str, Any]:
    """A stand-in job document whose history has ``history`` entries."""
    return {"id": "j", "state": state, "attempts": 1, "history": [{}] * history, **fields}


def sse(*messages: str) -> bytes:
    return "".join(f"{message}\n\n" for message in messages).encode()


def transition(seq: int, state: str) -> str:
    data = {"id": str(seq), "job_id": "j", "state": state, "seq": seq, "attempt": 1}
    return f"id: {seq}\nevent: transition\ndata: {json.dumps(data)}"


def progress(fraction: float) -> str:
    data = {"job_id": "j", "progress": {"fraction": fraction, "message": None}}
    return f"event: progress\ndata: {json.dumps({**data, 'cancel_requested': False})}"


def scripted(answers: list[httpx.Response | Exception], seen: list[httpx.Request]) -> Client:
    """A client whose requests get ``answers`` in turn, recorded in ``seen``."""
    replies = iter(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return stand_in(answer)


def test_wait_follows_the_event_stream_and_reads_the_job_only_on_news() -> None:
    seen: list[httpx.Request] = []
    stream = sse(": keepalive", transition(2, "RUNNING"), progress(0.5), transition(3, "COMPLETED"))
    answers: list[httpx.Response | Exception] = [
        httpx.Response(200, json=job_doc("CREATED", 1)),
        httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"}),
        httpx.Response(200, json=job_doc("RUNNING", 2)),
        httpx.Response(200, json=job_doc("COMPLETED", 3, result={"ok": True})),
    ]
    updates: list[dict[str, Any]] = []
    with scripted(answers, seen) as client:
        final = client.wait("j", on_update=updates.append)
    assert [(u["state"], u.get("progress")) for u in updates] == [
        ("CREATED", None),
        ("RUNNING", None),
        ("RUNNING", {"fraction": 0.5, "message": None}),
        ("COMPLETED", None),
    ]
    assert final["result"] == {"ok": True}
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/jobs/j"),
        ("GET", "/jobs/j/events"),
        ("GET", "/jobs/j"),
        ("GET", "/jobs/j"),
    ]
    events = seen[1]
    assert events.headers["Last-Event-ID"] == "1"  # the document already holds the first
    assert events.headers["Accept"] == "text/event-stream"
    assert events.url.params["progress"] == "true"


def test_wait_can_give_up_while_the_stream_is_quiet() -> None:
    def keepalives() -> Iterator[bytes]:
        while True:
            time.sleep(0.01)
            yield b": keepalive\n\n"

    def quiet(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=keepalives())
        return httpx.Response(200, json=job_doc("RUNNING", 2))

    with stand_in(quiet) as client, pytest.raises(WaitTimeoutError) as caught:
        client.wait("j", on_update=lambda job: None, timeout=0.1)
    assert caught.value.job_id == "j"
    assert caught.value.job["state"] == "RUNNING"


def test_wait_rides_out_a_short_outage_of_the_api() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        httpx.Response(200, json=job_doc("RUNNING", 2)),
        httpx.Response(503, json={"detail": "Redis is unavailable; try again shortly"}),
        httpx.ConnectError("refused"),
        # The API stops while the job retries: the stream ends early, then resumes.
        httpx.Response(200, content=sse(transition(3, "RETRYING"))),
        httpx.Response(200, json=job_doc("RETRYING", 3)),
        httpx.Response(200, content=sse(transition(4, "RUNNING"), transition(5, "COMPLETED"))),
        httpx.Response(200, json=job_doc("COMPLETED", 5)),
    ]
    updates: list[str] = []
    with scripted(answers, seen) as client:
        final = client.wait(
            "j", on_update=lambda job: updates.append(job["state"]), poll_seconds=0.01
        )
    assert final["state"] == "COMPLETED"
    assert updates == ["RUNNING", "RETRYING", "COMPLETED"]
    resumed_from = [r.headers["Last-Event-ID"] for r in seen if r.url.path.endswith("/events")]
    assert resumed_from == ["2", "2", "2", "3"]


def test_wait_polls_an_api_that_has_no_event_stream() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        httpx.Response(200, json=job_doc("RUNNING", 2)),
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(200, json=job_doc("RUNNING", 2)),
        httpx.Response(200, json=job_doc("COMPLETED", 3)),
    ]
    with scripted(answers, seen) as client:
        final = client.wait("j", on_update=lambda job: None, poll_seconds=0.01)
    assert final["state"] == "COMPLETED"
    assert [r.url.path for r in seen] == ["/jobs/j", "/jobs/j/events", "/jobs/j", "/jobs/j"]


def test_wait_gives_up_on_a_long_outage_and_on_other_errors() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "down"})

    with stand_in(down) as client, pytest.raises(ApiError) as caught:
        client.wait("j1", on_update=lambda job: None, poll_seconds=0.01, outage_seconds=0.1)
    assert caught.value.status == 503

    def gone(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no job with id 'j1'"})

    started = time.monotonic()
    with stand_in(gone) as client, pytest.raises(ApiError) as caught:
        client.wait("j1", on_update=lambda job: None, poll_seconds=0.01)
    assert caught.value.status == 404
    assert time.monotonic() - started < 1, "a 404 is not an outage"
