"""Redis or RabbitMQ down, hung or stopped mid-way: 503 with Retry-After within the bound,
and no job left half-created or visible."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
import redis
from apiserver import ApiFactory
from netfaults import TcpProxy

from orchestrator_core import Settings
from orchestrator_core.store import JobStore

ECHO = {"type": "demo.echo", "payload": {"message": "x"}}
BOUND = 5.0
"""Seconds within which a request must get its answer, whatever is down."""


def timed_post(client: httpx.Client) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post("/jobs", json=ECHO)
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, elapsed: float, service: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert service in response.json()["detail"]
    assert elapsed < BOUND


def assert_no_job(store: JobStore) -> None:
    assert store.list_jobs().items == ()
    assert store.redis.zcard(store.keys.outbox) == 0


def test_redis_unreachable(start_api: ApiFactory, closed_port: int) -> None:
    client = start_api(redis_url=f"redis://127.0.0.1:{closed_port}/0")
    assert_unavailable(*timed_post(client), "Redis")
    started = time.monotonic()
    response = client.get("/jobs")
    assert_unavailable(response, time.monotonic() - started, "Redis")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "redis" in ready.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_redis_hung(start_api: ApiFactory, hung_server: int) -> None:
    client = start_api(redis_url=f"redis://127.0.0.1:{hung_server}/0")
    assert_unavailable(*timed_post(client), "Redis")


def test_redis_paused_during_a_submit(
    api: httpx.Client, jobs_store: JobStore, redis_client: redis.Redis
) -> None:
    redis_client.execute_command("CLIENT", "PAUSE", 2500, "WRITE")
    try:
        assert_unavailable(*timed_post(api), "Redis")
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    time.sleep(0.3)
    assert_no_job(jobs_store)
    assert api.post("/jobs", json=ECHO).status_code == 201


def test_broker_unreachable(start_api: ApiFactory, closed_port: int, jobs_store: JobStore) -> None:
    client = start_api(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}//")
    assert_unavailable(*timed_post(client), "broker")
    assert_no_job(jobs_store)
    assert client.get("/readyz").json()["broker"].startswith("down")


def test_broker_hung(start_api: ApiFactory, hung_server: int, jobs_store: JobStore) -> None:
    client = start_api(broker_url=f"amqp://guest:guest@127.0.0.1:{hung_server}//")
    assert_unavailable(*timed_post(client), "broker")
    assert_no_job(jobs_store)
    started = time.monotonic()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert time.monotonic() - started < BOUND
    for path in ("/jobs", "/job-types"):
        assert client.get(path).status_code == 200, "reads need no broker"


@pytest.mark.parametrize("failure", ["refuse", "hang"])
def test_broker_stopping_between_submits(
    start_api: ApiFactory, rabbit_proxy: TcpProxy, jobs_store: JobStore, failure: str
) -> None:
    proxy = rabbit_proxy
    client = start_api(broker_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}//")
    first = client.post("/jobs", json=ECHO)
    assert first.status_code == 201
    proxy.set_mode(failure)
    assert_unavailable(*timed_post(client), "broker")
    assert [job.id for job in jobs_store.list_jobs().items] == [first.json()["id"]]
    proxy.set_mode("forward")
    again = client.post("/jobs", json=ECHO)
    assert again.status_code == 201, "the API recovers once the broker is back"


def test_no_5xx_response_carries_a_traceback_or_setting(
    start_api: ApiFactory, closed_port: int, api_settings: Settings
) -> None:
    secret_url = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    client = start_api(redis_url=secret_url)
    for response in (client.post("/jobs", json=ECHO), client.get("/jobs"), client.get("/readyz")):
        assert response.status_code == 503
        assert "hunter2" not in response.text
        assert "Traceback" not in response.text
        assert str(closed_port) not in response.text


def test_the_default_timeouts_keep_a_hung_broker_within_the_bound(
    start_api: ApiFactory, hung_server: int, jobs_store: JobStore
) -> None:
    defaults = {
        name: Settings.model_fields[name].default
        for name in ("publish_timeout_seconds", "redis_socket_timeout", "redis_connect_timeout")
    }
    client = start_api(broker_url=f"amqp://guest:guest@127.0.0.1:{hung_server}//", **defaults)
    assert_unavailable(*timed_post(client), "broker")
    assert_no_job(jobs_store)


@pytest.mark.parametrize(("threads", "waves"), [(1, 3), (3, 1)])
def test_blocking_calls_share_the_configured_threads(
    start_api: ApiFactory, hung_server: int, threads: int, waves: int
) -> None:
    # Each read of the hung Redis holds a thread for the 1 s socket timeout: three at once
    # take three turns on one thread, one turn on three.
    client = start_api(redis_url=f"redis://127.0.0.1:{hung_server}/0", api_threads=threads)
    missing = "/jobs/00000000-0000-4000-8000-000000000000"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        started = time.monotonic()
        pending = [pool.submit(client.get, missing) for _ in range(3)]
        time.sleep(0.3)
        probed = time.monotonic()
        healthz = client.get("/healthz")  # async: it needs no thread, so it never queues
        probe_took = time.monotonic() - probed
        answers = [future.result() for future in pending]
        elapsed = time.monotonic() - started

    assert [a.status_code for a in answers] == [503] * 3
    assert healthz.status_code == 200
    assert probe_took < 0.5
    assert waves - 0.2 <= elapsed < waves + 0.9
