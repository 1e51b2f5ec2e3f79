"""Listing: filters, newest-first order, and cursors that hold while jobs are being created."""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

import pytest

from orchestrator_core import InvalidQueryError, State
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis


def page_through(store: JobStore, **filters: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = store.list_jobs(cursor=cursor, **filters)
        ids.extend(job.id for job in page.items)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def test_filters_by_state_and_type_newest_first(store: JobStore) -> None:
    made = {}
    for n in range(9):
        job = store.create("t.even" if n % 2 == 0 else "t.odd", {"n": n}, max_attempts=1)
        made[n] = job.id
        if n % 3 == 0:
            store.transition(job.id, State.CANCELLED)
    newest_first = [made[n] for n in reversed(range(9))]
    assert page_through(store, limit=2) == newest_first
    assert page_through(store, job_type="t.even") == [made[n] for n in (8, 6, 4, 2, 0)]
    assert page_through(store, state=State.CANCELLED) == [made[n] for n in (6, 3, 0)]
    assert page_through(store, state="CANCELLED", job_type="t.even", limit=1) == [
        made[6],
        made[0],
    ]
    assert page_through(store, state="CREATED", job_type="t.odd") == [made[n] for n in (7, 5, 1)]
    assert page_through(store, job_type="t.none") == []
    first = store.list_jobs(limit=9)
    assert first.next_cursor is None
    assert [job.payload["n"] for job in first.items] == list(reversed(range(9)))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"state": "RUNNIN"}, "unknown state 'RUNNIN'"),
        ({"limit": 0}, "limit must be"),
        ({"limit": 501}, "limit must be"),
        ({"limit": True}, "limit must be"),
        ({"job_type": "t.even:CREATED"}, "malformed job type"),
        ({"job_type": "T.Upper"}, "malformed job type"),
        ({"job_type": "a" * 201}, "malformed job type"),
        ({"cursor": "abc"}, "malformed cursor"),
        ({"cursor": "-1"}, "malformed cursor"),
        ({"cursor": "9" * 40}, "malformed cursor"),
    ],
)
def test_bad_queries_are_refused_clearly(
    store: JobStore, query: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        store.list_jobs(**query)


def test_a_malformed_document_is_reported_and_left_out(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = store.create("t.demo", {}, max_attempts=1)
    bad = store.create("t.demo", {}, max_attempts=1)
    store.redis.hset(store.keys.job(bad.id), "payload", "{not json")
    with caplog.at_level(logging.ERROR):
        page = store.list_jobs()
    assert [job.id for job in page.items] == [good.id]
    assert bad.id in caplog.text


def _create_jobs(settings: Settings, count: int, started: Any) -> None:
    store = JobStore(connect_redis(settings), prefix=settings.prefix)
    for n in range(count):
        store.create("t.concurrent", {"n": n}, max_attempts=1)
        if n == 50:
            started.set()


def test_paging_neither_skips_nor_repeats_while_another_process_creates(
    store: JobStore, settings: Settings
) -> None:
    before = [store.create("t.concurrent", {"seed": n}, max_attempts=1).id for n in range(120)]
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    creator = context.Process(
        target=_create_jobs, args=(load_settings(prefix=settings.prefix), 400, started)
    )
    creator.start()
    assert started.wait(60)
    total_before = store.redis.get(store.keys.sequence)
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_jobs(limit=7, cursor=cursor, job_type="t.concurrent")
        seen.extend(job.id for job in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        time.sleep(0.002)  # pace the pages so the creator's writes land between them
    total_after = store.redis.get(store.keys.sequence)
    creator.join(60)
    assert creator.exitcode == 0

    assert int(total_after) > int(total_before), "no job was created while paging"
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert seen[-len(before) :] == list(reversed(before)), "a pre-existing job was skipped"
    everything = page_through(store, limit=500)
    assert len(everything) == 520
    positions = {job_id: i for i, job_id in enumerate(everything)}
    assert [positions[job_id] for job_id in seen] == sorted(positions[j] for j in seen)
