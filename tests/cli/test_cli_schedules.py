"""``orchestrator schedules``: the installed command against a real API over Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator_core import Settings, load_settings

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS / "api") not in sys.path:
    sys.path.append(str(TESTS / "api"))

from apiserver import serve  # noqa: E402

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


@pytest.fixture
def api(settings: Settings, redis_client: redis.Redis) -> Iterator[str]:
    """The URL of an API (no worker: schedules are only stored here)."""
    with serve(load_settings(prefix=settings.prefix, plugins="demo")) as url:
        yield url


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return subprocess.run(
        [str(ORCHESTRATOR), *args],
        env={**env, "ORCHESTRATOR_API_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    return line


def test_a_schedule_from_add_to_delete(api: str) -> None:
    added = cli(
        api,
        "schedules",
        "add",
        "nightly",
        "0 3 * * *",
        "demo.echo",
        '{"message": "hi"}',
        "--timezone",
        "Europe/Berlin",
        "--priority",
        "4",
    )
    assert added.returncode == 0, added.stderr
    [line] = added.stdout.splitlines()
    assert line.startswith("schedule nightly  0 3 * * * (Europe/Berlin)  demo.echo  next 20")

    listed = cli(api, "schedules", "list")
    header, row = listed.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "CRON", "TIMEZONE", "TYPE"]
    assert row.split()[:8] == ["nightly", "0", "3", "*", "*", "*", "Europe/Berlin", "demo.echo"]
    assert "yes" in row.split()
    # With no subcommand, the same list.
    assert cli(api, "schedules").stdout == listed.stdout

    shown = cli(api, "schedules", "get", "nightly")
    assert shown.returncode == 0, shown.stderr
    assert "payload: {" in shown.stdout
    assert '"message": "hi"' in shown.stdout
    assert "priority: 4" in shown.stdout
    assert "never fired yet" in shown.stdout

    paused = cli(api, "schedules", "pause", "nightly")
    assert paused.stdout.rstrip().endswith("demo.echo  paused")
    document = json.loads(cli(api, "schedules", "get", "nightly", "--json").stdout)
    assert (document["enabled"], document["next_run_at"]) == (False, None)
    resumed = cli(api, "schedules", "resume", "nightly", "--json")
    assert json.loads(resumed.stdout)["enabled"] is True

    deleted = cli(api, "schedules", "delete", "nightly")
    assert deleted.stdout.strip() == "schedule nightly deleted"
    assert cli(api, "schedules", "list").stdout.strip() == "no schedules"
    gone = cli(api, "schedules", "get", "nightly")
    assert one_error_line(gone) == "orchestrator: error: 404 no schedule named 'nightly'"
    assert one_error_line(cli(api, "schedules", "delete", "nightly")).endswith(
        "404 no schedule named 'nightly'"
    )


def test_add_prints_the_api_s_document_with_json(api: str) -> None:
    done = cli(
        api,
        "schedules",
        "add",
        "x",
        "*/5 * * * *",
        "demo.echo",
        '{"message": "m"}',
        "--paused",
        "--json",
    )
    document = json.loads(done.stdout)
    assert document["name"] == "x"
    assert (document["timezone"], document["enabled"]) == ("UTC", False)
    assert json.loads(cli(api, "schedules", "list", "--json").stdout) == {"items": [document]}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["bad", "0 3 * *", "demo.echo", '{"message": "m"}'],
            "cron: Value error, a cron expression has 5 fields",
        ),
        (
            ["bad", "0 3 * * *", "demo.echo", '{"message": "m"}', "--timezone", "Moon/Base"],
            "timezone: Value error, unknown time zone 'Moon/Base'",
        ),
        (
            ["bad", "0 3 * * *", "nope.missing", "{}"],
            "known types: demo.echo, demo.fail, demo.sleep",
        ),
        (
            ["bad", "0 3 * * *", "demo.echo", '{"message": 1}'],
            "payload.message: Input should be a valid string",
        ),
        (
            ["Bad", "0 3 * * *", "demo.echo", '{"message": "m"}'],
            "name: String should match pattern",
        ),
    ],
)
def test_a_refused_schedule_is_one_line_saying_why(api: str, args: list[str], says: str) -> None:
    line = one_error_line(cli(api, "schedules", "add", *args))
    assert line.startswith("orchestrator: error: 422 ")
    assert says in line


def test_a_taken_name_and_a_malformed_payload(api: str) -> None:
    first = cli(api, "schedules", "add", "n", "0 3 * * *", "demo.echo", '{"message": "m"}')
    assert first.returncode == 0, first.stderr
    again = cli(api, "schedules", "add", "n", "0 3 * * *", "demo.echo", '{"message": "m"}')
    assert one_error_line(again) == "orchestrator: error: 409 a schedule named 'n' already exists"
    malformed = cli(api, "schedules", "add", "m", "0 3 * * *", "demo.echo", "{oops")
    assert malformed.returncode == 2
    assert "not valid JSON" in malformed.stderr
