"""Flow control over real HTTP, Redis and RabbitMQ (DESIGN section 9): a submission's
priority, concurrency key, delay and run_at; ``PATCH /job-types/{name}`` overrides;
``POST /jobs/{id}/rerun``."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from apiserver import ApiFactory, served
from queues import ready_messages

from api.main import create_app
from orchestrator_core import Settings
from orchestrator_core.store import JobStore

ECHO: dict[str, Any] = {"type": "demo.echo", "payload": {"message": "hello"}}
ECHO_QUEUE = "demo.echo"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def post_raw(api: httpx.Client, fields: str) -> httpx.Response:
    """``POST /jobs`` of ECHO with ``fields`` (raw JSON members) added, for values such
    as NaN that a JSON encoder would refuse to write."""
    body = json.dumps(ECHO)[:-1] + ", " + fields + "}"
    return api.post("/jobs", content=body, headers={"Content-Type": "application/json"})


def entry(api: httpx.Client, name: str = "demo.echo") -> dict[str, Any]:
    response = api.get(f"/job-types/{name}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


# --- Submissions -----------------------------------------------------------------


def test_priority_key_and_delay_are_stored_and_a_delayed_job_is_not_queued_yet(
    api: httpx.Client, api_settings: Settings
) -> None:
    queue = f"{api_settings.prefix}.{ECHO_QUEUE}"
    plain = api.post("/jobs", json=ECHO).json()
    assert (plain["priority"], plain["concurrency_key"], plain["not_before"]) == (0, None, None)
    assert ready_messages(api_settings, queue) == 1

    before = time.time()
    response = api.post(
        "/jobs", json={**ECHO, "priority": 7, "concurrency_key": "tenant-a", "delay": 3600}
    )
    assert response.status_code == 201, response.text
    delayed = response.json()
    assert (delayed["priority"], delayed["concurrency_key"]) == (7, "tenant-a")
    assert delayed["state"] == "CREATED"
    wait = instant(delayed["not_before"]).timestamp() - before
    assert 3590 < wait < 3700, wait
    assert (delayed["rerun_of"], delayed["schedule"]) == (None, None)
    assert api.get(f"/jobs/{delayed['id']}").json()["not_before"] == delayed["not_before"]
    assert ready_messages(api_settings, queue) == 1, "a job waiting for its time has no message"

    # A DELETE cancels a job that waits for its time at once.
    cancelled = api.delete(f"/jobs/{delayed['id']}")
    assert (cancelled.status_code, cancelled.json()["state"]) == (202, "CANCELLED")


def test_run_at_with_an_offset_is_the_instant_it_names(
    api: httpx.Client, api_settings: Settings
) -> None:
    expected = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=123456)
    # The same instant written in another zone: the offset says which instant it is.
    text = (expected + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    job = api.post("/jobs", json={**ECHO, "run_at": text}).json()
    assert instant(job["not_before"]) == expected
    assert job["not_before"].endswith("Z")
    # A time already past starts the job at once: it is queued like any other.
    past = api.post("/jobs", json={**ECHO, "run_at": "2020-01-01T00:00:00Z"}).json()
    assert past["not_before"] is None
    assert ready_messages(api_settings, f"{api_settings.prefix}.{ECHO_QUEUE}") == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ('"priority": 10', "priority"),
        ('"priority": -1', "priority"),
        ('"priority": "x"', "priority"),
        ('"priority": true', "priority"),
        ('"priority": 2.5', "priority"),
        ('"concurrency_key": ""', "concurrency_key"),
        ('"concurrency_key": "' + "k" * 201 + '"', "concurrency_key"),
        ('"concurrency_key": 5', "concurrency_key"),
        ('"delay": -1', "delay"),
        ('"delay": NaN', "delay"),
        ('"delay": Infinity', "delay"),
        ('"delay": "5"', "delay"),
        ('"delay": 40000000', "delay"),
        ('"delay": 5, "run_at": "2030-01-01T00:00:00Z"', "run_at"),
        ('"run_at": "2030-01-01T00:00:00"', "run_at"),
        ('"run_at": "2030-01-01"', "run_at"),
        ('"run_at": "tomorrow"', "run_at"),
        ('"run_at": 1900000000', "run_at"),
        ('"run_at": "2999-01-01T00:00:00Z"', "run_at"),
    ],
)
def test_a_bad_flow_field_is_422_naming_it_and_creates_nothing(
    api: httpx.Client, fields: str, field: str
) -> None:
    response = post_raw(api, fields)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field]
    if field == "run_at":
        assert "run_at" in error["msg"]
    assert api.get("/jobs").json()["items"] == []


def test_both_delay_and_run_at_is_refused_saying_so(api: httpx.Client) -> None:
    response = api.post("/jobs", json={**ECHO, "delay": 1, "run_at": "2030-01-01T00:00:00Z"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"] == "give delay or run_at, not both"


def test_a_batch_item_with_a_bad_flow_field_names_its_index_and_creates_nothing(
    api: httpx.Client,
) -> None:
    items = [
        {**ECHO, "priority": 3, "delay": 60},
        {**ECHO, "priority": 10},
        {**ECHO, "run_at": "2030-01-01T00:00:00"},
    ]
    response = api.post("/jobs/batch", json={"jobs": items})
    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["detail"]]
    assert locs == [["body", "jobs", 1, "priority"], ["body", "jobs", 2, "run_at"]]
    assert api.get("/jobs").json()["items"] == []

    good = api.post("/jobs/batch", json={"jobs": [items[0], {**ECHO, "concurrency_key": "t"}]})
    assert good.status_code == 201
    first, second = good.json()["items"]
    assert (first["priority"], first["not_before"] is not None) == (3, True)
    assert (second["priority"], second["concurrency_key"], second["not_before"]) == (0, "t", None)


# --- Overrides -------------------------------------------------------------------


def test_the_catalog_shows_each_type_s_own_limits_and_no_override(api: httpx.Client) -> None:
    for listed in api.get("/job-types").json():
        assert listed["overrides"] == {}
        assert listed["paused"] is False
        assert listed["priority"] == 0
        assert {"concurrency", "concurrency_per_key", "rate_limit", "rate_limit_per_key"} <= set(
            listed
        )


def test_patch_stores_an_override_and_the_catalog_shows_the_effective_values(
    api: httpx.Client, jobs_store: JobStore
) -> None:
    response = api.patch(
        "/job-types/demo.echo",
        json={"concurrency": 2, "rate_limit_per_key": " 10 / s", "paused": True, "priority": 5},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["concurrency"], patched["rate_limit_per_key"]) == (2, "10/s")
    assert (patched["paused"], patched["priority"]) == (True, 5)
    assert patched["overrides"] == {
        "concurrency": 2,
        "rate_limit_per_key": "10/s",
        "paused": True,
        "priority": 5,
    }
    assert entry(api) == patched
    listed = {t["name"]: t for t in api.get("/job-types").json()}
    assert listed["demo.echo"] == patched
    assert listed["demo.sleep"]["overrides"] == {}, "another type is not touched"
    assert listed["demo.sleep"]["paused"] is False
    assert jobs_store.overrides()["demo.echo"] == patched["overrides"]

    # null removes a field's override; the rest stay.
    cleared = api.patch("/job-types/demo.echo", json={"concurrency": None, "paused": None}).json()
    assert (cleared["concurrency"], cleared["paused"]) == (None, False)
    assert cleared["overrides"] == {"rate_limit_per_key": "10/s", "priority": 5}
    assert entry(api) == cleared


def test_a_job_without_a_priority_takes_its_type_s_effective_one(
    api: httpx.Client, start_api: ApiFactory
) -> None:
    other = start_api()  # a second API process on the same deployment
    assert other.post("/jobs", json=ECHO).json()["priority"] == 0  # its copy is now read

    assert api.patch("/job-types/demo.echo", json={"priority": 6}).status_code == 200
    # At once in the process that stored it; the job's own priority still wins.
    assert api.post("/jobs", json=ECHO).json()["priority"] == 6
    assert api.post("/jobs", json={**ECHO, "priority": 2}).json()["priority"] == 2
    assert (
        api.post("/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}}).json()["priority"]
        == 0
    )
    batch = api.post("/jobs/batch", json={"jobs": [ECHO, {**ECHO, "priority": 1}]}).json()
    assert [job["priority"] for job in batch["items"]] == [6, 1]

    # In another process once its copy (at most a second old) is read again.
    deadline = time.monotonic() + 10
    while (seen := other.post("/jobs", json=ECHO).json()["priority"]) != 6:
        assert time.monotonic() < deadline, "the other API never took up the override"
        time.sleep(0.1)
    assert seen == 6


def test_submissions_read_the_overrides_from_redis_at_most_once_a_second(
    api_settings: Settings,
) -> None:
    app = create_app(api_settings)
    store = app.state.api.store
    reads = 0
    read = store.overrides

    def counted() -> dict[str, dict[str, Any]]:
        nonlocal reads
        reads += 1
        return read()

    store.overrides = counted
    with served(app) as server, httpx.Client(base_url=server.url, timeout=15) as client:
        started = time.monotonic()
        for _ in range(60):
            assert client.post("/jobs", json=ECHO).status_code == 201
        batch = client.post("/jobs/batch", json={"jobs": [ECHO] * 50})
        assert batch.status_code == 201
        elapsed = time.monotonic() - started
    assert 1 <= reads <= elapsed + 2, (reads, elapsed)


def test_patch_of_an_unknown_type_is_404_and_stores_nothing(
    api: httpx.Client, jobs_store: JobStore
) -> None:
    response = api.patch("/job-types/nope.missing", json={"concurrency": 1})
    assert response.status_code == 404
    assert "demo.echo" in response.json()["detail"]
    assert jobs_store.overrides() == {}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": "2"}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency_per_key": -3}, "concurrency_per_key"),
        ({"rate_limit": "fast"}, "rate"),
        ({"rate_limit": "0/s"}, "rate"),
        ({"rate_limit_per_key": 5}, "rate"),
        ({"priority": 10}, "priority"),
        ({"paused": "yes"}, "paused"),
        ({"bogus": 1}, "bogus"),
        ({"concurrency": 5, "priority": 99}, "priority"),
        ({}, "concurrency"),
        ([], "concurrency"),
    ],
)
def test_a_bad_patch_is_422_naming_the_field_and_changes_nothing(
    api: httpx.Client, body: object, named: str
) -> None:
    assert api.patch("/job-types/demo.echo", json={"concurrency": 3}).status_code == 200
    before = entry(api)
    response = api.patch("/job-types/demo.echo", json=body)
    assert response.status_code == 422, response.text
    assert named in response.json()["detail"]
    assert entry(api) == before
    assert before["concurrency"] == 3
    assert before["overrides"] == {"concurrency": 3}


def test_a_patch_that_is_not_json_is_refused_before_anything_is_stored(
    api: httpx.Client, jobs_store: JobStore
) -> None:
    plain = api.patch("/job-types/demo.echo", content=b'{"paused": true}')
    assert plain.status_code == 415
    broken = api.patch(
        "/job-types/demo.echo", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert jobs_store.overrides() == {}


def test_a_read_only_key_may_not_patch_or_rerun(
    start_api: ApiFactory, jobs_store: JobStore
) -> None:
    keyed = start_api(api_keys=("k-full",), readonly_api_keys=("k-read",))
    full, read = {"Authorization": "Bearer k-full"}, {"Authorization": "Bearer k-read"}
    refused = keyed.patch("/job-types/demo.echo", json={"paused": True}, headers=read)
    assert refused.status_code == 403
    assert jobs_store.overrides() == {}
    job = keyed.post("/jobs", json=ECHO, headers=full).json()
    keyed.delete(f"/jobs/{job['id']}", headers=full)
    assert keyed.post(f"/jobs/{job['id']}/rerun", headers=read).status_code == 403
    assert len(keyed.get("/jobs", headers=read).json()["items"]) == 1
    assert keyed.get("/job-types/demo.echo", headers=read).json()["paused"] is False


# --- Re-run ----------------------------------------------------------------------


def test_rerun_of_a_finished_job_makes_a_new_one_like_it(
    api: httpx.Client, api_settings: Settings
) -> None:
    payload = {"message": "again", "data": {"n": 1}}
    original = api.post(
        "/jobs",
        json={
            "type": "demo.echo",
            "payload": payload,
            "priority": 4,
            "concurrency_key": "t1",
            "max_attempts": 2,
        },
    ).json()
    assert api.delete(f"/jobs/{original['id']}").json()["state"] == "CANCELLED"

    response = api.post(f"/jobs/{original['id']}/rerun")
    assert response.status_code == 201, response.text
    rerun = response.json()
    assert response.headers["location"] == f"/jobs/{rerun['id']}"
    assert rerun["id"] != original["id"]
    assert rerun["rerun_of"] == original["id"]
    assert rerun["state"] == "CREATED"
    assert (rerun["type"], rerun["payload"]) == ("demo.echo", original["payload"])
    assert (rerun["priority"], rerun["concurrency_key"]) == (4, "t1")
    assert (rerun["attempts"], rerun["max_attempts"]) == (0, 2)
    assert [entry["state"] for entry in rerun["history"]] == ["CREATED"]
    assert api.get(f"/jobs/{rerun['id']}").json() == rerun
    assert api.get(f"/jobs/{original['id']}").json()["state"] == "CANCELLED", "left as it was"
    # Its message is published: the original's (never consumed) and the new one's.
    assert ready_messages(api_settings, f"{api_settings.prefix}.{ECHO_QUEUE}") == 2

    again = api.post(f"/jobs/{original['id']}/rerun").json()
    assert again["id"] not in (original["id"], rerun["id"])
    assert again["rerun_of"] == original["id"]


def test_rerun_of_a_job_that_has_not_finished_is_409_with_its_document(
    api: httpx.Client,
) -> None:
    job = api.post("/jobs", json=ECHO).json()
    response = api.post(f"/jobs/{job['id']}/rerun")
    assert response.status_code == 409
    current = response.json()
    assert (current["id"], current["state"]) == (job["id"], "CREATED")
    assert len(api.get("/jobs").json()["items"]) == 1, "nothing was made"


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_rerun_of_an_unknown_job_is_404(api: httpx.Client, job_id: str) -> None:
    response = api.post(f"/jobs/{job_id}/rerun")
    assert response.status_code == 404
    assert api.get("/jobs").json()["items"] == []


# --- The document ----------------------------------------------------------------


def test_openapi_shows_the_flow_fields_and_the_patch_body(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    variant = document["components"]["schemas"]["JobCreate_demo_echo"]["properties"]
    assert {"priority", "concurrency_key", "delay", "run_at"} <= set(variant)
    assert any(option.get("format") == "date-time" for option in variant["run_at"]["anyOf"])
    patch = document["paths"]["/job-types/{name}"]["patch"]
    schema = patch["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {
        "priority",
        "concurrency",
        "concurrency_per_key",
        "rate_limit",
        "rate_limit_per_key",
        "paused",
    }
    assert "post" in document["paths"]["/jobs/{job_id}/rerun"]
    public = document["components"]["schemas"]["JobTypePublic"]["properties"]
    assert {"paused", "overrides", "concurrency", "rate_limit"} <= set(public)
