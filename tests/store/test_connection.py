"""A Redis that is down, hung or paused raises StoreUnavailableError within the timeouts."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from orchestrator_core import JobNotFoundError, State, StoreUnavailableError
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore

TIMEOUT = 0.4


def store_at(url: str, settings: Settings) -> JobStore:
    return JobStore.from_settings(
        load_settings(
            redis_url=url,
            prefix=settings.prefix,
            redis_socket_timeout=TIMEOUT,
            redis_connect_timeout=TIMEOUT,
        )
    )


def assert_unavailable_quickly(store: JobStore) -> None:
    calls = [
        lambda: store.get(str(uuid.uuid4())),
        lambda: store.create("t.demo", {}, max_attempts=1),
        lambda: store.list_jobs(),
        lambda: store.transition(str(uuid.uuid4()), State.CANCELLED),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            call()
        assert time.monotonic() - started < TIMEOUT * 2 + 0.5


def test_unreachable_redis(closed_port: int, settings: Settings) -> None:
    store = store_at(f"redis://127.0.0.1:{closed_port}/0", settings)
    assert_unavailable_quickly(store)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.get(str(uuid.uuid4()))


def test_hung_redis(hung_server: int, settings: Settings) -> None:
    store = store_at(f"redis://127.0.0.1:{hung_server}/0", settings)
    assert_unavailable_quickly(store)
    with pytest.raises(StoreUnavailableError, match="did not answer in time"):
        store.get(str(uuid.uuid4()))


def test_paused_redis_times_out_and_never_leaves_half_a_job(
    redis_client: redis.Redis, settings: Settings
) -> None:
    store = store_at(settings.redis_url, settings)
    job_id = str(uuid.uuid4())
    redis_client.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.create("t.demo", {"n": 1}, max_attempts=1, job_id=job_id)
        assert time.monotonic() - started < TIMEOUT * 2 + 0.5
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    # The write was queued behind the pause; it lands whole or not at all.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            job = store.get(job_id)
        except JobNotFoundError:
            time.sleep(0.02)
            continue
        assert job.state is State.CREATED
        assert job.payload == {"n": 1}
        assert [entry.state for entry in job.history] == [State.CREATED]
        assert store.list_jobs().items == (job,)
        return
    assert store.list_jobs().items == ()


def test_a_connection_the_server_closed_costs_no_failed_command(
    settings: Settings, redis_client: redis.Redis
) -> None:
    # As after a restart of Redis: every connection the store holds is gone.
    store = JobStore.from_settings(settings)
    job = store.create("t.demo", {}, max_attempts=1)
    name = f"{settings.prefix}-orchestrator"
    killed = 0
    for client in redis_client.client_list():
        if client.get("name") == name:
            killed += redis_client.client_kill_filter(_id=client["id"])
    assert killed >= 1

    assert store.get(job.id) == job
    assert store.cancel(job.id).job.state is State.CANCELLED
