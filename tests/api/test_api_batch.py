"""POST /jobs/batch over real HTTP, Redis and RabbitMQ: all submitted, or none."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from apiserver import ApiFactory
from netfaults import TcpProxy
from queues import ready_messages

from orchestrator_core import Settings
from orchestrator_core.store import JobStore

MIB = 1024 * 1024


def echo(n: int) -> dict[str, Any]:
    return {"type": "demo.echo", "payload": {"message": f"m{n}"}}


@pytest.fixture
def client(start_api: ApiFactory) -> httpx.Client:
    return start_api(max_body_bytes=MIB)


def test_a_batch_is_stored_queued_and_answered_in_request_order(
    client: httpx.Client, api_settings: Settings, jobs_store: JobStore
) -> None:
    jobs = [echo(n) for n in range(300)]
    jobs.insert(7, {"type": "demo.sleep", "payload": {"seconds": 1}, "max_attempts": 2})

    response = client.post("/jobs/batch", json={"jobs": jobs})

    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [item["type"] for item in items] == [job["type"] for job in jobs]
    assert [item["payload"].get("message") for item in items] == [
        job["payload"].get("message") for job in jobs
    ]
    assert items[7]["max_attempts"] == 2
    assert {item["state"] for item in items} == {"CREATED"}
    assert len({item["id"] for item in items}) == len(jobs)
    assert client.get(f"/jobs/{items[0]['id']}").json() == items[0]
    assert ready_messages(api_settings, f"{api_settings.prefix}.demo.echo") == 300
    assert ready_messages(api_settings, f"{api_settings.prefix}.demo.sleep") == 1
    assert jobs_store.redis.zcard(jobs_store.keys.outbox) == 0


@pytest.mark.parametrize(
    ("body", "locations"),
    [
        ({"jobs": [echo(0), {"type": "nope.x", "payload": {}}]}, [["body", "jobs", 1, "type"]]),
        (
            {"jobs": [{"type": "demo.sleep", "payload": {"seconds": -1}}, echo(1), {"x": 1}]},
            [["body", "jobs", 0, "payload", "seconds"], ["body", "jobs", 2, "type"]],
        ),
        ({"jobs": []}, [["body", "jobs"]]),
        ({"jobs": [echo(n) for n in range(1001)]}, [["body", "jobs"]]),
        ({"jobs": echo(0)}, [["body", "jobs"]]),
        ({"jobs": [echo(0)], "more": 1}, [["body"]]),
        ([echo(0)], [["body"]]),
    ],
    ids=["unknown-type", "bad-items", "empty", "too-many", "not-a-list", "extra", "bare-list"],
)
def test_any_invalid_item_refuses_the_whole_batch_naming_each(
    client: httpx.Client,
    jobs_store: JobStore,
    body: Any,
    locations: list[list[Any]],
) -> None:
    response = client.post("/jobs/batch", json=body)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [error["loc"] for error in detail][: len(locations)] == locations
    assert all(error["msg"] for error in detail)
    assert jobs_store.list_jobs().items == ()


def test_an_unknown_type_in_a_batch_lists_the_known_ones(client: httpx.Client) -> None:
    response = client.post("/jobs/batch", json={"jobs": [{"type": "nope.x", "payload": {}}]})
    [error] = response.json()["detail"]
    assert error["type"] == "unknown_job_type"
    assert error["known_types"] == ["demo.echo", "demo.fail", "demo.sleep"]


def test_an_idempotency_key_covers_the_whole_batch(client: httpx.Client) -> None:
    body = {"jobs": [echo(n) for n in range(5)]}
    headers = {"Idempotency-Key": "batch-1"}
    first = client.post("/jobs/batch", json=body, headers=headers)
    again = client.post("/jobs/batch", json=body, headers=headers)
    other = client.post("/jobs/batch", json={"jobs": [echo(9)]}, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 200
    assert [j["id"] for j in again.json()["items"]] == [j["id"] for j in first.json()["items"]]
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]


def test_a_broker_that_stops_confirming_leaves_none_of_the_batch(
    start_api: ApiFactory, rabbit_proxy: TcpProxy, jobs_store: JobStore
) -> None:
    client = start_api(
        max_body_bytes=MIB, broker_url=f"amqp://guest:guest@127.0.0.1:{rabbit_proxy.port}//"
    )
    assert client.post("/jobs/batch", json={"jobs": [echo(0)]}).status_code == 201
    kept = {job.id for job in jobs_store.list_jobs().items}
    # Published, but the confirms never come back.
    rabbit_proxy.set_mode("hang")

    response = client.post("/jobs/batch", json={"jobs": [echo(n) for n in range(50)]})

    assert response.status_code == 503, response.text
    assert {job.id for job in jobs_store.list_jobs(limit=500).items} == kept
    assert jobs_store.redis.zcard(jobs_store.keys.outbox) == 0
    rabbit_proxy.set_mode("forward")
    assert client.post("/jobs/batch", json={"jobs": [echo(1)]}).status_code == 201


def test_a_body_over_the_limit_is_413(start_api: ApiFactory) -> None:
    client = start_api()  # 4 KiB
    response = client.post("/jobs/batch", json={"jobs": [echo(n) for n in range(200)]})
    assert response.status_code == 413
