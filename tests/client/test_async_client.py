"""The async client end to end, against a real API and a real worker (see conftest.py).

A test that leaves a long job running cancels it in ``finally``, so that the worker's
two slots are free for the next test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import pytest

from orchestrator_client import ApiError, AsyncClient, Client, WaitTimeoutError
from orchestrator_core import load_settings

pytestmark = pytest.mark.anyio

Document = dict[str, Any]


def shown(job: Document) -> tuple[object, ...]:
    """What a person following the job sees change."""
    return (job["state"], job["attempts"], job["progress"], job["cancel_requested"])


async def until(client: AsyncClient, job_id: str, state: str) -> Document:
    """The job's document once it is in ``state``."""
    deadline = time.monotonic() + 20
    while (job := await client.get(job_id))["state"] != state:
        assert time.monotonic() < deadline, f"the job never got to {state}: {job}"
        await asyncio.sleep(0.02)
    return job


@asynccontextmanager
async def sleeping(client: AsyncClient, seconds: float) -> AsyncIterator[str]:
    """A ``demo.sleep`` job of ``seconds``, cancelled on the way out whatever happened."""
    job = await client.submit("demo.sleep", {"seconds": seconds, "steps": int(seconds)})
    try:
        yield job["id"]
    finally:
        with contextlib.suppress(ApiError):
            await client.cancel(job["id"])


async def test_submit_then_wait_shows_each_change_once_like_the_sync_client(api_url: str) -> None:
    async with AsyncClient(api_url) as client:
        job = await client.submit("demo.sleep", {"seconds": 1.2, "steps": 3})
        assert (job["state"], job["type"], job["attempts"]) == ("CREATED", "demo.sleep", 0)
        updates: list[Document] = []
        synced: list[Document] = []
        with Client(api_url) as sync_client:
            done, sync_done = await asyncio.gather(
                client.wait(job["id"], on_update=updates.append),
                asyncio.to_thread(sync_client.wait, job["id"], on_update=synced.append),
            )
    assert (done["state"], done["result"]) == ("COMPLETED", {"slept": 1.2})
    assert updates[-1] == done
    changes = [shown(update) for update in updates]
    assert all(before != after for before, after in itertools.pairwise(changes))
    # Progress is sampled (every 0.25 s), so a step may pass unseen, but never out of order.
    steps = list(dict.fromkeys(job["progress"]["message"] for job in updates if job["progress"]))
    assert steps == sorted(steps)
    assert steps[-1] == "step 3/3"
    # Both followed the same job from about the same moment: one saw all the other saw.
    assert sync_done == done
    synced_changes = [shown(update) for update in synced]
    shorter, longer = sorted([changes, synced_changes], key=len)
    assert within(shorter, longer), (changes, synced_changes)


def within(shorter: list[Any], longer: list[Any]) -> bool:
    """Whether ``shorter`` is ``longer`` with some items left out."""
    rest = iter(longer)
    return all(item in rest for item in shorter)


async def test_an_invalid_payload_is_a_422_with_the_validation_errors(api_url: str) -> None:
    async with AsyncClient(api_url) as client:
        with pytest.raises(ApiError) as caught:
            await client.submit("demo.sleep", {"seconds": -1, "extra": 1})
    assert caught.value.status == 422
    assert isinstance(caught.value.detail, list)
    places = {tuple(item["loc"]) for item in caught.value.detail}
    assert {("body", "payload", "seconds"), ("body", "payload", "extra")} <= places
    assert str(caught.value).startswith("422 payload.")
    assert "payload.seconds: " in str(caught.value)
    assert "payload.extra: " in str(caught.value)


async def test_get_and_cancel_a_running_job_then_wait_sees_it_cancelled(api_url: str) -> None:
    async with AsyncClient(api_url) as client, sleeping(client, 60) as job_id:
        running = await until(client, job_id, "RUNNING")
        assert (running["id"], running["attempts"], running["cancel_requested"]) == (
            job_id,
            1,
            False,
        )
        status, asked = await client.cancel(job_id)
        assert status == 202
        assert (asked["state"], asked["cancel_requested"]) == ("RUNNING", True)
        updates: list[str] = []
        done = await client.wait(job_id, on_update=lambda job: updates.append(job["state"]))
        assert done["state"] == "CANCELLED"
        assert updates[-1] == "CANCELLED"
        assert [entry["state"] for entry in (await client.get(job_id))["history"]] == [
            "CREATED",
            "RUNNING",
            "CANCELLED",
        ]


async def test_cancelling_a_finished_job_is_a_409_that_leaves_it(api_url: str) -> None:
    async with AsyncClient(api_url) as client:
        job = await client.submit("demo.echo", {"message": "done already"})
        done = await client.wait(job["id"], on_update=lambda job: None)
        status, unchanged = await client.cancel(job["id"])
    assert status == 409
    assert unchanged["state"] == "COMPLETED"
    assert unchanged["result"] == done["result"] == {"message": "done already", "data": None}


async def test_an_unknown_id_is_a_404(api_url: str) -> None:
    job_id = str(uuid.uuid4())
    async with AsyncClient(api_url) as client:
        for call in (client.get, client.cancel):
            with pytest.raises(ApiError) as caught:
                await call(job_id)
            assert caught.value.status == 404
            assert str(caught.value) == f"404 no job with id '{job_id}'"


async def test_jobs_come_a_page_at_a_time_newest_first(api_url: str) -> None:
    marker = uuid.uuid4().hex
    async with AsyncClient.from_settings(load_settings(api_url=api_url)) as client:
        ids = [
            (await client.submit("demo.echo", {"message": f"{marker} {i}"}))["id"] for i in range(3)
        ]
        first = await client.jobs(type="demo.echo", limit=2)
        second = await client.jobs(type="demo.echo", limit=2, cursor=first["next_cursor"])
        for job_id in ids:
            await until(client, job_id, "COMPLETED")
        completed = await client.jobs(state="COMPLETED", type="demo.echo", limit=100)
    assert [job["id"] for job in first["items"]] == ids[:0:-1]
    assert second["items"][0]["id"] == ids[0]
    assert set(ids) <= {job["id"] for job in completed["items"]}
    assert {job["state"] for job in completed["items"]} == {"COMPLETED"}


async def test_events_follow_jobs_submitted_after_they_started(api_url: str) -> None:
    seen: list[Document] = []

    async def follow(client: AsyncClient) -> None:
        async with aclosing(client.events(type="demo.echo")) as events:
            async for event in events:
                seen.append(event)

    async with AsyncClient(api_url) as client:
        reader = asyncio.create_task(follow(client))
        try:
            # The stream is open once it has shown a job; until then, jobs may pass unseen.
            deadline = time.monotonic() + 20
            while not seen:
                assert time.monotonic() < deadline, "the events stream showed nothing"
                await client.submit("demo.echo", {"message": "probe"})
                await asyncio.sleep(0.3)
            job = await client.submit("demo.echo", {"message": "followed"})
            while not any(e["job_id"] == job["id"] and e["state"] == "COMPLETED" for e in seen):
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.05)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    followed = [event for event in seen if event["job_id"] == job["id"]]
    assert [(e["from"], e["state"]) for e in followed] == [
        (None, "CREATED"),
        ("CREATED", "RUNNING"),
        ("RUNNING", "COMPLETED"),
    ]
    assert [e["seq"] for e in followed] == [1, 2, 3]
    assert {e["type"] for e in seen} == {"demo.echo"}


async def test_a_wait_that_times_out_leaves_the_job_running(api_url: str) -> None:
    async with AsyncClient(api_url) as client, sleeping(client, 30) as job_id:
        await until(client, job_id, "RUNNING")
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            await client.wait(job_id, on_update=lambda job: None, timeout=0.5)
        assert time.monotonic() - started < 10, "the wait outlived its timeout by far"
        assert caught.value.job_id == job_id
        assert caught.value.job["state"] == "RUNNING"
        assert (await client.get(job_id))["state"] == "RUNNING"


async def test_an_unreachable_api_is_an_error_without_status(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    async with AsyncClient(url) as client:
        with pytest.raises(ApiError) as got:
            await client.get("some-id")
        with pytest.raises(ApiError) as waited:
            await client.wait("some-id", on_update=lambda job: None, outage_seconds=0.3)
        with pytest.raises(ApiError) as followed:
            async with aclosing(client.events(outage_seconds=0.3)) as events:
                await anext(events)
    for caught in (got, waited, followed):
        assert caught.value.status is None
        assert str(caught.value).startswith(f"the API at {url} is unreachable: ")
