"""The schedules in Redis: create once, read, change atomically, delete, record fires."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from orchestrator_core import StoreUnavailableError
from orchestrator_core.exceptions import ScheduleExistsError, ScheduleNotFoundError
from orchestrator_core.schedules import Schedule
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.schedules import ScheduleStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new(name: str = "nightly", **fields: Any) -> Schedule:
    defaults: dict[str, Any] = {
        "cron": "0 3 * * *",
        "type": "demo.echo",
        "payload": {"message": "hi"},
        "created_at": T0,
        "armed_at": T0,
    }
    return Schedule(name=name, **{**defaults, **fields})


@pytest.fixture
def schedules(redis_client: redis.Redis, settings: Settings) -> ScheduleStore:
    return ScheduleStore(redis_client, Keys(settings.prefix))


def test_a_created_schedule_reads_back_as_it_was_stored(
    schedules: ScheduleStore, redis_client: redis.Redis, settings: Settings
) -> None:
    stored = new(timezone="Europe/Berlin", priority=7, concurrency_key="tenant-1")
    schedules.create(stored)
    assert schedules.get("nightly") == stored
    # One JSON record per name, in the one hash of the prefix.
    assert redis_client.hkeys(f"{settings.prefix}:schedules") == ["nightly"]


def test_a_name_is_created_once(schedules: ScheduleStore) -> None:
    schedules.create(new(payload={"message": "first"}))
    with pytest.raises(ScheduleExistsError, match="'nightly' already exists"):
        schedules.create(new(payload={"message": "second"}))
    assert schedules.get("nightly").payload == {"message": "first"}


def test_racing_creates_of_one_name_make_one_schedule(schedules: ScheduleStore) -> None:
    barrier = threading.Barrier(10)
    won: list[int] = []

    def create(n: int) -> None:
        barrier.wait()
        try:
            schedules.create(new(payload={"message": str(n)}))
        except ScheduleExistsError:
            return
        won.append(n)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert schedules.get("nightly").payload == {"message": str(won[0])}


def test_unknown_names_are_not_found(schedules: ScheduleStore) -> None:
    with pytest.raises(ScheduleNotFoundError, match="no schedule named 'ghost'"):
        schedules.get("ghost")
    with pytest.raises(ScheduleNotFoundError):
        schedules.update("ghost", lambda s: s)
    with pytest.raises(ScheduleNotFoundError):
        schedules.delete("ghost")
    assert schedules.record_fire("ghost", T0, "job") is None


def test_the_list_is_by_name_and_leaves_out_an_unreadable_record(
    schedules: ScheduleStore, redis_client: redis.Redis, settings: Settings
) -> None:
    for name in ("b", "c", "a"):
        schedules.create(new(name))
    redis_client.hset(f"{settings.prefix}:schedules", "broken", "{not json")
    assert [s.name for s in schedules.list()] == ["a", "b", "c"]
    with pytest.raises(ScheduleNotFoundError):
        schedules.get("broken")


def test_an_update_replaces_the_record_and_a_failing_change_writes_nothing(
    schedules: ScheduleStore,
) -> None:
    schedules.create(new())
    changed = schedules.update("nightly", lambda s: s.model_copy(update={"enabled": False}))
    assert not changed.enabled
    assert schedules.get("nightly") == changed

    def refuse(schedule: Schedule) -> Schedule:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        schedules.update("nightly", refuse)
    assert schedules.get("nightly") == changed
    with pytest.raises(ValueError, match="cannot rename"):
        schedules.update("nightly", lambda s: s.model_copy(update={"name": "other"}))


def test_concurrent_updates_lose_no_write(schedules: ScheduleStore) -> None:
    """Each thread appends to the payload many times; every append survives."""
    schedules.create(new(payload={"message": "", "data": {}}))
    barrier = threading.Barrier(4)

    def append(letter: str) -> None:
        barrier.wait()
        for n in range(25):

            def add(schedule: Schedule, key: str = f"{letter}{n}") -> Schedule:
                data = {**schedule.payload["data"], key: True}
                return schedule.model_copy(update={"payload": {**schedule.payload, "data": data}})

            schedules.update("nightly", add)

    threads = [threading.Thread(target=append, args=(letter,)) for letter in "wxyz"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(schedules.get("nightly").payload["data"]) == 100


def test_a_fire_only_moves_the_last_run_forward(schedules: ScheduleStore) -> None:
    schedules.create(new())
    later, earlier = T0 + timedelta(days=2), T0 + timedelta(days=1)
    recorded = schedules.record_fire("nightly", later, "job-2")
    assert recorded is not None
    assert (recorded.last_run_at, recorded.last_job_id) == (later, "job-2")
    # A scheduler that was slow to record an older fire does not move it back...
    schedules.record_fire("nightly", earlier, "job-1")
    # ...and one recording the same fire again changes nothing.
    schedules.record_fire("nightly", later, "job-2")
    stored = schedules.get("nightly")
    assert (stored.last_run_at, stored.last_job_id) == (later, "job-2")


def test_fires_recorded_while_an_operator_edits_are_both_kept(schedules: ScheduleStore) -> None:
    schedules.create(new())
    barrier = threading.Barrier(2)

    def fire() -> None:
        barrier.wait()
        for day in range(1, 31):
            schedules.record_fire("nightly", T0 + timedelta(days=day), f"job-{day}")

    def edit() -> None:
        barrier.wait()
        for n in range(30):
            schedules.update(
                "nightly", lambda s, n=n: s.model_copy(update={"payload": {"message": str(n)}})
            )

    threads = [threading.Thread(target=fire), threading.Thread(target=edit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = schedules.get("nightly")
    assert stored.last_run_at == T0 + timedelta(days=30)
    assert stored.last_job_id == "job-30"
    assert stored.payload == {"message": "29"}


def test_a_deleted_schedule_is_gone(schedules: ScheduleStore) -> None:
    schedules.create(new())
    schedules.delete("nightly")
    assert schedules.list() == []
    with pytest.raises(ScheduleNotFoundError):
        schedules.delete("nightly")


def test_the_clock_is_redis_s(schedules: ScheduleStore, redis_client: redis.Redis) -> None:
    seconds, _ = redis_client.time()
    assert abs(schedules.now().timestamp() - seconds) < 5


def test_an_unreachable_redis_is_store_unavailable(closed_port: int, settings: Settings) -> None:
    client = connect_redis(load_settings(redis_url=f"redis://127.0.0.1:{closed_port}/0"))
    store = ScheduleStore(client, Keys(settings.prefix))
    for call in (store.list, lambda: store.get("x"), lambda: store.create(new()), store.now):
        with pytest.raises(StoreUnavailableError):
            call()
