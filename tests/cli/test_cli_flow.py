"""Flow control from the command line and the Python clients, against a real API on the
machine's Redis and RabbitMQ: ``submit`` with a priority, key and delay, ``rerun``,
``types`` and ``types set``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, job_queues

from orchestrator_client import ApiError, AsyncClient, Client
from orchestrator_core import Settings, load_plugins, load_settings

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS / "api") not in sys.path:
    sys.path.append(str(TESTS / "api"))  # the API served as its own suite serves it

from apiserver import serve  # noqa: E402

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
ECHO = '{"message": "hi"}'


@pytest.fixture
def api(settings: Settings, redis_client: redis.Redis) -> Iterator[str]:
    """The URL of an API (no worker: jobs stay CREATED until cancelled) under the test's
    own prefix, whose keys the ``redis_client`` fixture deletes."""
    configured = load_settings(prefix=settings.prefix, plugins="demo")
    try:
        with serve(configured) as url:
            yield url
    finally:
        queues = job_queues(configured.prefix, load_plugins(allow=configured.plugins))
        delete_broker_objects(configured.broker_url, configured.prefix, queues)


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` with the API at ``url`` and nothing else configured."""
    return run_many(url, list(args))[0]


def run_many(url: str, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands side by side: each costs an interpreter start."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
        "ORCHESTRATOR_API_URL": url,
    }
    processes = [
        subprocess.Popen(
            [str(ORCHESTRATOR), *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    done = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    return line


def cancelled_job(url: str, **fields: Any) -> dict[str, Any]:
    body = {"type": "demo.echo", "payload": {"message": "again"}, **fields}
    job: dict[str, Any] = httpx.post(f"{url}/jobs", json=body, timeout=10).json()
    assert httpx.delete(f"{url}/jobs/{job['id']}", timeout=10).json()["state"] == "CANCELLED"
    return job


# --- submit ----------------------------------------------------------------------


def test_submit_sends_priority_key_and_delay_or_run_at(api: str) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
    delayed, timed = run_many(
        api,
        ["submit", "demo.echo", ECHO, "--priority", "8", "--key", "t-1", "--delay", "90", "--json"],
        ["submit", "demo.echo", ECHO, "--run-at", run_at.isoformat(), "--json"],
    )
    assert delayed.returncode == 0, delayed.stderr
    job = json.loads(delayed.stdout)
    assert (job["priority"], job["concurrency_key"]) == (8, "t-1")
    assert job["not_before"] is not None
    assert timed.returncode == 0, timed.stderr
    assert json.loads(timed.stdout)["not_before"] == run_at.strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    shown = run(api, "get", job["id"])
    assert shown.returncode == 0
    assert f"priority 8  key t-1  not before {job['not_before']}" in shown.stdout


def test_submit_refuses_bad_flow_options_before_any_request(api: str) -> None:
    results = run_many(
        api,
        ["submit", "demo.echo", ECHO, "--priority", "10"],
        ["submit", "demo.echo", ECHO, "--priority", "high"],
        ["submit", "demo.echo", ECHO, "--delay", "-1"],
        ["submit", "demo.echo", ECHO, "--delay", "5", "--run-at", "2030-01-01T00:00:00Z"],
        ["submit", "--batch", "-", "--priority", "3"],
    )
    for done in results:
        assert done.returncode == 2, (done.args, done.stderr)
        assert "Traceback" not in done.stderr
    assert httpx.get(f"{api}/jobs", timeout=10).json()["items"] == []


def test_a_run_at_without_an_offset_is_the_api_s_422_naming_the_field(api: str) -> None:
    done = run(api, "submit", "demo.echo", ECHO, "--run-at", "2030-01-01T00:00:00")
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith("orchestrator: error: 422 run_at: run_at must be an RFC 3339")


# --- rerun -----------------------------------------------------------------------


def test_rerun_prints_the_new_job_and_refuses_one_that_has_not_finished(api: str) -> None:
    finished = cancelled_job(api, priority=2, concurrency_key="acme")
    waiting = httpx.post(
        f"{api}/jobs", json={"type": "demo.echo", "payload": {"message": "x"}}, timeout=10
    ).json()
    missing = str(uuid.uuid4())
    plain, as_json, refused, unknown = run_many(
        api,
        ["rerun", finished["id"]],
        ["rerun", finished["id"], "--json"],
        ["rerun", waiting["id"]],
        ["rerun", missing],
    )
    assert plain.returncode == 0, plain.stderr
    first, flow = plain.stdout.splitlines()
    new_id = first.split()[1]
    assert new_id != finished["id"]
    assert first == f"job {new_id}  demo.echo  CREATED  attempts 0/1"
    assert flow == f"priority 2  key acme  re-run of {finished['id']}"

    document = json.loads(as_json.stdout)
    assert (document["rerun_of"], document["priority"]) == (finished["id"], 2)
    assert document["payload"] == finished["payload"]

    assert refused.returncode == 1
    assert one_error_line(refused) == (
        f"orchestrator: error: job {waiting['id']} is CREATED: only a finished job can be re-run"
    )
    assert unknown.returncode == 1
    assert one_error_line(unknown) == f"orchestrator: error: 404 no job with id '{missing}'"


# --- types -----------------------------------------------------------------------


def test_types_set_overrides_limits_and_types_shows_them(api: str) -> None:
    listed = run(api, "types")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "PRIORITY",
        "CONCURRENCY",
        "PER-KEY",
        "RATE",
        "RATE/KEY",
        "PAUSED",
    ]
    assert [row.split() for row in rows] == [
        [name, "0", "-", "-", "-", "-", "no"] for name in ("demo.echo", "demo.fail", "demo.sleep")
    ]

    changed = run(
        api,
        *("types", "set", "demo.echo", "--concurrency", "2", "--rate-limit-per-key", "10/m"),
        "--pause",
    )
    assert changed.returncode == 0, changed.stderr
    _, row, note = changed.stdout.splitlines()
    assert row.split() == ["demo.echo", "0", "2*", "-", "-", "10/m*", "yes*"]
    assert note.startswith("* overridden")

    after = run(api, "types", "--json")
    entries = {entry["name"]: entry for entry in json.loads(after.stdout)}
    echo = entries["demo.echo"]
    assert (echo["concurrency"], echo["rate_limit_per_key"], echo["paused"]) == (2, "10/m", True)
    assert entries["demo.sleep"]["overrides"] == {}

    resumed = run(api, "types", "set", "demo.echo", "--resume", "--clear", "concurrency", "--json")
    assert resumed.returncode == 0, resumed.stderr
    entry = json.loads(resumed.stdout)
    assert (entry["concurrency"], entry["paused"]) == (None, False)
    assert entry["overrides"] == {"rate_limit_per_key": "10/m"}


def test_types_set_refuses_nothing_to_do_bad_values_and_unknown_types(api: str) -> None:
    results = run_many(
        api,
        ["types", "set", "demo.echo"],
        ["types", "set", "demo.echo", "--rate-limit", "fast"],
        ["types", "set", "demo.echo", "--concurrency", "0"],
        ["types", "set", "demo.echo", "--concurrency", "2", "--clear", "concurrency"],
        ["types", "set", "demo.echo", "--clear", "speed"],
        ["types", "set", "demo.echo", "--pause", "--resume"],
    )
    for done in results:
        assert done.returncode == 2, (done.args, done.stderr)
        assert "Traceback" not in done.stderr
    unknown = run(api, "types", "set", "nope.missing", "--pause")
    assert unknown.returncode == 1
    assert one_error_line(unknown).startswith("orchestrator: error: 404 unknown job type")
    assert all(t["overrides"] == {} for t in httpx.get(f"{api}/job-types", timeout=10).json())


# --- The Python clients ----------------------------------------------------------


def test_the_client_submits_reruns_and_overrides(api: str) -> None:
    with Client(api) as client:
        at = datetime.now(UTC) + timedelta(days=1)
        job = client.submit(
            "demo.echo", {"message": "m"}, priority=1, concurrency_key="k", run_at=at
        )
        assert (job["priority"], job["concurrency_key"]) == (1, "k")
        assert datetime.fromisoformat(job["not_before"].replace("Z", "+00:00")) == at
        with pytest.raises(ApiError) as caught:
            client.submit("demo.echo", {"message": "m"}, run_at=at.replace(tzinfo=None))
        assert caught.value.status == 422

        with pytest.raises(ApiError) as conflict:
            client.rerun(job["id"])
        assert conflict.value.status == 409
        client.cancel(job["id"])
        again = client.rerun(job["id"])
        assert (again["rerun_of"], again["priority"], again["concurrency_key"]) == (
            job["id"],
            1,
            "k",
        )

        assert [t["name"] for t in client.job_types()] == ["demo.echo", "demo.fail", "demo.sleep"]
        entry = client.update_job_type("demo.sleep", priority=4, rate_limit="3/s")
        assert (entry["priority"], entry["rate_limit"]) == (4, "3/s")
        assert client.job_type("demo.sleep") == entry
        cleared = client.update_job_type("demo.sleep", rate_limit=None)
        assert cleared["overrides"] == {"priority": 4}
        with pytest.raises(ApiError) as bad:
            client.update_job_type("demo.sleep", concurrency=0)
        assert bad.value.status == 422
        with pytest.raises(ApiError) as unknown:
            client.job_type("nope.missing")
        assert unknown.value.status == 404


def test_the_async_client_does_the_same(api: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api) as client:
            job = await client.submit("demo.echo", {"message": "m"}, priority=5, delay=60)
            assert job["priority"] == 5
            assert job["not_before"] is not None
            await client.cancel(job["id"])
            again = await client.rerun(job["id"])
            assert (again["rerun_of"], again["priority"]) == (job["id"], 5)
            entry = await client.update_job_type("demo.echo", paused=True)
            assert entry["paused"] is True
            listed = {t["name"]: t for t in await client.job_types()}
            assert listed["demo.echo"]["paused"] is True
            assert (await client.job_type("demo.echo"))["overrides"] == {"paused": True}

    asyncio.run(scenario())
