"""The /jobs resource over real HTTP, Redis and RabbitMQ."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from queues import ready_messages

from orchestrator_core import ErrorInfo, Progress, Settings, State
from orchestrator_core.store import JobStore

ECHO = {"type": "demo.echo", "payload": {"message": "hello"}}


def test_a_submitted_job_is_stored_queued_and_out_of_the_outbox(
    api: httpx.Client, api_settings: Settings, jobs_store: JobStore
) -> None:
    response = api.post("/jobs", json=ECHO)
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] == "CREATED"
    assert job["payload"] == {"message": "hello", "data": None}, "stored as validated"
    assert (job["attempts"], job["max_attempts"]) == (0, 1)
    assert job["created_at"].endswith("Z")
    assert [h["state"] for h in job["history"]] == ["CREATED"]
    assert api.get(f"/jobs/{job['id']}").json() == job
    assert ready_messages(api_settings, f"{api_settings.prefix}.demo.echo") == 1
    assert jobs_store.redis.zscore(jobs_store.keys.outbox, job["id"]) is None


def test_max_attempts_can_be_overridden_within_bounds(api: httpx.Client) -> None:
    job = api.post("/jobs", json={**ECHO, "max_attempts": 7}).json()
    assert job["max_attempts"] == 7
    for bad in (0, 101, "3", True, 2.5):
        response = api.post("/jobs", json={**ECHO, "max_attempts": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["body", "max_attempts"]


def test_an_unknown_type_lists_the_known_ones(api: httpx.Client) -> None:
    response = api.post("/jobs", json={"type": "nope.missing", "payload": {}})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "type"]
    assert error["known_types"] == ["demo.echo", "demo.fail", "demo.sleep"]
    assert "nope.missing" in error["msg"]


def test_an_invalid_payload_gets_each_error_with_its_path(api: httpx.Client) -> None:
    response = api.post(
        "/jobs", json={"type": "demo.sleep", "payload": {"seconds": -1, "steps": "many"}}
    )
    assert response.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in response.json()["detail"]}
    assert set(errors) == {("body", "payload", "seconds"), ("body", "payload", "steps")}
    assert "greater than or equal to 0" in errors[("body", "payload", "seconds")]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"payload": {}}, ["body", "type"]),
        ({"type": "demo.echo"}, ["body", "payload"]),
        ({"type": "demo.echo", "payload": [1]}, ["body", "payload"]),
        ({**ECHO, "extra": 1}, ["body", "extra"]),
        ([1, 2], ["body"]),
    ],
)
def test_a_malformed_submission_is_refused_with_its_path(
    api: httpx.Client, body: object, loc: list[str]
) -> None:
    response = api.post("/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"type": "demo.echo", "payload": {', "application/json", 400),
        (b"\xff\xfe not utf-8", "application/json", 400),
        (b'{"type": "demo.echo", "payload": {"message": "x"}}', "text/plain", 415),
        (b'{"type": "demo.echo", "payload": {"message": "x"}}', "", 415),
    ],
)
def test_bad_bodies_get_a_clear_error_and_create_nothing(
    api: httpx.Client, content: bytes, content_type: str, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = api.post("/jobs", content=content, headers=headers)
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str)
    assert api.get("/jobs").json()["items"] == []


def test_a_json_body_with_charset_is_accepted(api: httpx.Client) -> None:
    response = api.post(
        "/jobs",
        content=b'{"type": "demo.echo", "payload": {"message": "x"}}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(api: httpx.Client) -> None:
    url = urlsplit(str(api.base_url))
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_a_chunked_body_running_over_the_limit_is_refused(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "demo.echo", "payload": {"message": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}}'

    response = api.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert api.get("/jobs").json()["items"] == []


def test_an_idempotency_key_makes_one_job_per_request(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/jobs", json=ECHO, headers=headers)
    again = api.post("/jobs", json=ECHO, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = api.post("/jobs", json={**ECHO, "payload": {"message": "other"}}, headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert len(api.get("/jobs").json()["items"]) == 1


def test_concurrent_requests_with_one_key_create_one_job(api: httpx.Client) -> None:
    statuses: list[int] = []
    ids: list[str] = []
    barrier = threading.Barrier(12)

    def request() -> None:
        with httpx.Client(base_url=api.base_url, timeout=15) as own:
            barrier.wait()
            response = own.post("/jobs", json=ECHO, headers={"Idempotency-Key": "same"})
        statuses.append(response.status_code)
        ids.append(response.json()["id"])

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 11 + [201]
    assert len(set(ids)) == 1
    assert len(api.get("/jobs").json()["items"]) == 1


def test_get_of_unknown_or_malformed_ids_is_404(api: httpx.Client) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid", "%7Bx%7D"):
        response = api.get(f"/jobs/{job_id}")
        assert response.status_code == 404
        assert "no job" in response.json()["detail"]
        assert api.delete(f"/jobs/{job_id}").status_code == 404


def test_cancel_covers_every_state(api: httpx.Client, jobs_store: JobStore) -> None:
    created = api.post("/jobs", json=ECHO).json()
    cancelled = api.delete(f"/jobs/{created['id']}")
    assert (cancelled.status_code, cancelled.json()["state"]) == (202, "CANCELLED")
    again = api.delete(f"/jobs/{created['id']}")
    assert again.status_code == 202
    assert again.json() == cancelled.json()

    running = api.post("/jobs", json=ECHO).json()
    jobs_store.start(running["id"], 1, "w:1")
    requested = api.delete(f"/jobs/{running['id']}")
    assert requested.status_code == 202
    assert (requested.json()["state"], requested.json()["cancel_requested"]) == ("RUNNING", True)

    done = api.post("/jobs", json=ECHO).json()
    jobs_store.start(done["id"], 1, "w:2")
    jobs_store.transition(done["id"], State.COMPLETED, fence="w:2", result={"ok": 1})
    refused = api.delete(f"/jobs/{done['id']}")
    assert refused.status_code == 409
    assert (refused.json()["state"], refused.json()["result"]) == ("COMPLETED", {"ok": 1})


def test_listing_filters_and_pages_newest_first(api: httpx.Client) -> None:
    echoes = [api.post("/jobs", json=ECHO).json()["id"] for _ in range(5)]
    sleeper = api.post("/jobs", json={"type": "demo.sleep", "payload": {"seconds": 1}}).json()
    api.delete(f"/jobs/{echoes[0]}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "type": "demo.echo"}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/jobs", params=params).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(echoes))
    created = api.get("/jobs", params={"state": "CREATED"}).json()["items"]
    assert [job["id"] for job in created] == [sleeper["id"], *reversed(echoes[1:])]
    cancelled = api.get("/jobs", params={"state": "CANCELLED", "type": "demo.echo"}).json()
    assert [job["id"] for job in cancelled["items"]] == [echoes[0]]


@pytest.mark.parametrize(
    "params",
    [
        {"state": "DONE"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "x"},
        {"cursor": "abc"},
        {"type": "demo.echo:CREATED"},
    ],
)
def test_bad_listing_queries_are_422(api: httpx.Client, params: dict[str, object]) -> None:
    response = api.get("/jobs", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_job_documents_carry_result_error_and_progress(
    api: httpx.Client, jobs_store: JobStore
) -> None:
    job = api.post("/jobs", json=ECHO).json()
    jobs_store.start(job["id"], 1, "w:1")
    jobs_store.report_progress(job["id"], "w:1", Progress(fraction=0.5, message="half"))
    jobs_store.transition(
        job["id"],
        State.FAILED,
        fence="w:1",
        error=ErrorInfo(type="ValueError", message="bad", retryable=False),
    )
    document = api.get(f"/jobs/{job['id']}").json()
    assert document["progress"] == {"fraction": 0.5, "message": "half"}
    assert document["error"] == {"type": "ValueError", "message": "bad", "retryable": False}
    assert document["started_at"] is not None
    assert document["finished_at"] is not None
    assert [h["state"] for h in document["history"]] == ["CREATED", "RUNNING", "FAILED"]
