"""Structured logs: the formatter's fields, a job's context, and every line of a real
API and a real worker in JSON (DESIGN section 13)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, job_queues
from processes import free_port, running_system

from orchestrator_core import Settings, load_plugins
from orchestrator_core.telemetry.logs import (
    JobContextFilter,
    JsonFormatter,
    TextFormatter,
    bind_job_type,
    configure_logging,
    job_context,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "logging"
FIELDS = {"time", "level", "logger", "message"}


def _record(message: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("orchestrator.test", logging.INFO, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_json_line_has_time_level_logger_and_message() -> None:
    line = json.loads(JsonFormatter().format(_record("hello %s", "there")))
    assert line["level"] == "INFO"
    assert line["logger"] == "orchestrator.test"
    assert line["message"] == "hello there"
    assert line["time"].endswith("Z")
    assert len(line["time"]) == len("2026-01-01T00:00:00.000Z")
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    assert "job_id" not in line
    assert "exception" not in line


def test_job_context_reaches_the_record_and_ends_with_the_block() -> None:
    job_filter = JobContextFilter()
    with job_context("job-1", 3):
        bind_job_type("demo.echo")
        inside = _record()
        job_filter.filter(inside)
    outside = _record()
    job_filter.filter(outside)
    line = json.loads(JsonFormatter().format(inside))
    assert (line["job_id"], line["type"], line["attempt"]) == ("job-1", "demo.echo", 3)
    assert "job_id" not in json.loads(JsonFormatter().format(outside))
    text = TextFormatter().format(inside)
    assert "[job_id=job-1 type=demo.echo attempt=3]" in text


def test_exception_text_is_one_field_of_one_line() -> None:
    try:
        raise ValueError("broken thing")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    formatted = JsonFormatter().format(record)
    assert "\n" not in formatted
    line = json.loads(formatted)
    assert "ValueError: broken thing" in line["exception"]
    assert "Traceback" in line["exception"]


def test_configure_logging_replaces_handlers_and_text_has_timestamps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        configure_logging("text", "INFO")
        logging.getLogger("orchestrator.test").info("plain %d", 7)
        configure_logging("json", "WARNING")
        logging.getLogger("orchestrator.test").info("below the threshold")
        with job_context("job-2", 1, "demo.sleep"):
            logging.getLogger("orchestrator.test").warning("in a job")
        lines = capsys.readouterr().err.splitlines()
    finally:
        root.handlers, _ = before
        root.setLevel(before[1])
    assert len(lines) == 2
    assert datetime.fromisoformat(lines[0].split(" ")[0]).year >= 2024
    assert lines[0].endswith("INFO orchestrator.test: plain 7")
    assert json.loads(lines[1])["job_id"] == "job-2"


@pytest.fixture
def system(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[httpx.Client, dict[str, Path]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_PREFIX=settings.prefix,
        ORCHESTRATOR_PLUGINS="demo,logtest",
        ORCHESTRATOR_LOG_FORMAT="json",
        ORCHESTRATOR_LOG_LEVEL="INFO",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2",
        PYTHONPATH=os.pathsep.join([str(FIXTURES), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    try:
        with running_system(
            env,
            free_port(),
            tmp_path,
            worker=["--log-level", "DEBUG", "worker", "--concurrency", "1"],
            api=["api", "--workers", "1"],
        ) as system:
            yield system
    finally:
        plugins = load_plugins(allow=("demo",))
        delete_broker_objects(
            settings.broker_url, settings.prefix, job_queues(settings.prefix, plugins)
        )
        delete_broker_objects(
            settings.broker_url, settings.prefix, [f"{settings.prefix}.logtest.say"]
        )


def _lines(log: Path) -> list[dict[str, Any]]:
    parsed = []
    for raw in log.read_text().splitlines():
        line = json.loads(raw)  # a line that is not JSON fails here, naming itself
        assert line.keys() >= FIELDS, raw
        parsed.append(line)
    return parsed


def test_every_line_of_the_api_and_the_worker_is_json_with_the_job_fields(
    system: tuple[httpx.Client, dict[str, Path]],
) -> None:
    client, logs = system
    created = client.post("/jobs", json={"type": "logtest.say", "payload": {"text": "ahoy"}})
    assert created.status_code == 201
    job_id = created.json()["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/jobs/{job_id}").json()["state"] != "COMPLETED":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.05)

    api = _lines(logs["api"])
    assert any(line["logger"] == "uvicorn.access" for line in api), "no access line"
    assert any(line["logger"] == "uvicorn.error" for line in api), "no server line"

    worker = _lines(logs["worker"])
    ready = [line for line in worker if line["message"].endswith(" ready.")]
    assert ready
    assert ready[0]["logger"].startswith("celery")
    said = [line for line in worker if line["logger"] == "orchestrator_logtest"]
    assert [line["message"] for line in said] == ["saying ahoy"]
    assert (said[0]["job_id"], said[0]["type"], said[0]["attempt"]) == (
        job_id,
        "logtest.say",
        1,
    )
    ended = [line for line in worker if line["logger"] == "worker.runner"]
    assert ended
    assert all(line["job_id"] == job_id for line in ended)
    print("api:", json.dumps(api[-1]))
    print("worker:", json.dumps(said[0]))
