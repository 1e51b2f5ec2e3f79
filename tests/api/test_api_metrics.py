"""``GET /metrics`` scraped over HTTP after real jobs ran through a real worker."""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiserver import ApiFactory
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from orchestrator_core import Settings, load_settings

# The worker tests' process harness, for real worker processes here too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "worker"))
from harness import Workers

DISTS = Path(__file__).resolve().parent.parent / "fixtures" / "dists"
DEMO_TYPES = "demo.echo,demo.fail,demo.sleep"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client, **request: Any) -> Samples:
    """Every sample of one scrape, by name and labels."""
    response = client.get("/metrics", **request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("orchestrator_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name``, by their sorted labels."""
    return {
        tuple(sorted(labels)): number
        for (sample, labels), number in samples.items()
        if sample == name
    }


def job_figures(samples: Samples) -> Samples:
    """The samples read from Redis (jobs and workers), which every API process shares."""
    return {
        key: number
        for key, number in samples.items()
        if key[0].startswith(("orchestrator_job", "orchestrator_worker"))
    }


def submit(api: httpx.Client, job_type: str, payload: dict[str, Any], **extra: Any) -> str:
    response = api.post("/jobs", json={"type": job_type, "payload": payload, **extra})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait(api: httpx.Client, job_id: str, state: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (job := api.get(f"/jobs/{job_id}").json())["state"] != state:
        assert time.monotonic() < deadline, f"job stayed {job['state']}: {job}"
        time.sleep(0.05)


def wait_for_workers(api: httpx.Client, count: int, timeout: float = 15) -> Samples:
    deadline = time.monotonic() + timeout
    while value(samples := scrape(api), "orchestrator_workers") != count:
        assert time.monotonic() < deadline, (
            f"never {count} workers: {series(samples, 'orchestrator_workers')}"
        )
        time.sleep(0.1)
    return samples


def worker_name(pid: int) -> str:
    return f"orchestrator-{pid}@{socket.gethostname()}"


@dataclass
class BrokenPluginWorkers(Workers):
    """Workers that also load a plugin distribution whose import fails."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["ORCHESTRATOR_PLUGINS"] = "demo,brokenimport"
        env["PYTHONPATH"] = os.pathsep.join([str(DISTS), env["PYTHONPATH"]])
        return env


def _worker_settings(api_settings: Settings) -> Settings:
    # Quick sweeps, so the failing job's retry is published at once after its backoff.
    return load_settings(
        **{
            **api_settings.model_dump(),
            "sweep_interval_seconds": 0.1,
            "cancel_grace_seconds": 0.5,
            "lease_seconds": 5.0,
        }
    )


@pytest.fixture
def workers(api_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(_worker_settings(api_settings), tmp_path)
    yield pool
    pool.stop_all()
    for worker in pool.started:
        print(f"--- {worker.log.name}\n{worker.text()[-6000:]}")


@pytest.fixture
def broken_plugin_workers(api_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = BrokenPluginWorkers(_worker_settings(api_settings), tmp_path)
    yield pool
    pool.stop_all()
    for worker in pool.started:
        print(f"--- {worker.log.name}\n{worker.text()[-6000:]}")


@pytest.fixture
def dists(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The broken plugin distributions on sys.path, where this process's scan finds them."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(DISTS))
    importlib.invalidate_caches()
    yield
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(DISTS)):
            del sys.modules[name]


def test_a_known_sequence_of_jobs_gives_exact_figures(
    api: httpx.Client, start_api: ApiFactory, workers: Workers
) -> None:
    # Before any worker runs: one job cancelled while queued, one left waiting.
    cancelled_queued = submit(api, "demo.echo", {"message": "never runs"})
    completed = submit(api, "demo.echo", {"message": "hi"})
    assert api.delete(f"/jobs/{cancelled_queued}").status_code == 202
    time.sleep(0.3)  # the waiting job's queue wait is at least this
    worker = workers.start(concurrency=2, types=DEMO_TYPES)
    failed = submit(api, "demo.fail", {"times": 5}, max_attempts=2)
    cancelled_running = submit(api, "demo.sleep", {"seconds": 60})
    wait(api, completed, "COMPLETED")
    wait(api, failed, "FAILED")
    wait(api, cancelled_running, "RUNNING")
    time.sleep(0.3)  # the running job's duration is at least this
    assert api.delete(f"/jobs/{cancelled_running}").status_code == 202
    wait(api, cancelled_running, "CANCELLED", timeout=10)

    samples = wait_for_workers(api, 1)

    assert value(samples, "orchestrator_store_up") == 1
    assert series(samples, "orchestrator_jobs_submitted_total") == {
        (("type", "demo.echo"),): 2,
        (("type", "demo.fail"),): 1,
        (("type", "demo.sleep"),): 1,
    }
    assert series(samples, "orchestrator_job_transitions_total") == {
        (("state", "CREATED"), ("type", "demo.echo")): 2,
        (("state", "RUNNING"), ("type", "demo.echo")): 1,
        (("state", "COMPLETED"), ("type", "demo.echo")): 1,
        (("state", "CANCELLED"), ("type", "demo.echo")): 1,
        (("state", "CREATED"), ("type", "demo.fail")): 1,
        (("state", "RUNNING"), ("type", "demo.fail")): 2,
        (("state", "RETRYING"), ("type", "demo.fail")): 1,
        (("state", "FAILED"), ("type", "demo.fail")): 1,
        (("state", "CREATED"), ("type", "demo.sleep")): 1,
        (("state", "RUNNING"), ("type", "demo.sleep")): 1,
        (("state", "CANCELLED"), ("type", "demo.sleep")): 1,
    }
    now_in = {
        (labels[1][1], labels[0][1]): count
        for labels, count in series(samples, "orchestrator_jobs").items()
        if count
    }
    assert now_in == {
        ("demo.echo", "COMPLETED"): 1,
        ("demo.echo", "CANCELLED"): 1,
        ("demo.fail", "FAILED"): 1,
        ("demo.sleep", "CANCELLED"): 1,
    }
    assert len(series(samples, "orchestrator_jobs")) == 3 * 6  # every state of every type

    # Queue wait: once per job that ever started.
    waits = series(samples, "orchestrator_job_queue_wait_seconds_count")
    assert waits == {(("type", t),): 1 for t in ("demo.echo", "demo.fail", "demo.sleep")}
    assert value(samples, "orchestrator_job_queue_wait_seconds_sum", type="demo.echo") >= 0.3
    # Duration: first start to the end, by how the job ended; the job cancelled while
    # queued never started, so it has none.
    assert series(samples, "orchestrator_job_duration_seconds_count") == {
        (("state", "COMPLETED"), ("type", "demo.echo")): 1,
        (("state", "FAILED"), ("type", "demo.fail")): 1,
        (("state", "CANCELLED"), ("type", "demo.sleep")): 1,
    }
    duration = "orchestrator_job_duration_seconds_sum"
    assert value(samples, duration, type="demo.fail", state="FAILED") >= 0.1  # half the backoff
    assert value(samples, duration, type="demo.sleep", state="CANCELLED") >= 0.3
    # Attempts of every job that ended.
    attempts = "orchestrator_job_attempts"
    assert series(samples, f"{attempts}_sum") == {
        (("state", "COMPLETED"), ("type", "demo.echo")): 1,
        (("state", "CANCELLED"), ("type", "demo.echo")): 0,
        (("state", "FAILED"), ("type", "demo.fail")): 2,
        (("state", "CANCELLED"), ("type", "demo.sleep")): 1,
    }
    bucket = f"{attempts}_bucket"
    assert value(samples, bucket, type="demo.fail", state="FAILED", le="1.0") == 0
    assert value(samples, bucket, type="demo.fail", state="FAILED", le="2.0") == 1
    assert value(samples, bucket, type="demo.fail", state="FAILED", le="+Inf") == 1
    # Cancel latency, by the state cancelled from: none for a queued job; the worker's
    # time to stop for a running one.
    latency = "orchestrator_job_cancel_latency_seconds"
    assert series(samples, f"{latency}_count") == {
        (("from_state", "CREATED"), ("type", "demo.echo")): 1,
        (("from_state", "RUNNING"), ("type", "demo.sleep")): 1,
    }
    assert value(samples, f"{latency}_sum", type="demo.echo", from_state="CREATED") == 0
    assert 0 < value(samples, f"{latency}_sum", type="demo.sleep", from_state="RUNNING") < 5

    # The worker, through its heartbeat.
    name = worker_name(worker.process.pid)
    assert series(samples, "orchestrator_worker_concurrency") == {(("worker", name),): 2}
    assert series(samples, "orchestrator_worker_plugin_load_failures") == {(("worker", name),): 0}

    # Another API process on the same prefix reports the same deployment, not its own.
    other = start_api()
    assert job_figures(scrape(other)) == job_figures(scrape(api))

    # A clean stop removes the worker's heartbeat at once.
    workers.stop_all()
    gone = scrape(api)
    assert value(gone, "orchestrator_workers") == 0
    assert series(gone, "orchestrator_worker_concurrency") == {}


def test_request_latency_is_labelled_by_route_template(api: httpx.Client) -> None:
    job_id = submit(api, "demo.echo", {"message": "x"})
    for _ in range(3):
        assert api.get(f"/jobs/{job_id}").status_code == 200
    assert api.get("/jobs/00000000-0000-4000-8000-000000000000").status_code == 404
    assert api.get("/no/such/path").status_code == 404
    assert api.request("PROPFIND", "/jobs").status_code == 405

    samples = scrape(api)

    counts = series(samples, "orchestrator_http_request_duration_seconds_count")
    assert counts[(("method", "POST"), ("route", "/jobs"), ("status", "201"))] == 1
    assert counts[(("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "200"))] == 3
    assert counts[(("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "404"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert counts[(("method", "other"), ("route", "/jobs"), ("status", "405"))] == 1
    routes = {dict(labels)["route"] for labels in counts}
    assert job_id not in str(routes), "raw paths must not become labels"
    assert "/no/such/path" not in routes
    total = "orchestrator_http_request_duration_seconds_sum"
    assert value(samples, total, method="GET", route="/jobs/{job_id}", status="200") > 0
    # The scrape itself shows up in the next one.
    assert (
        value(
            scrape(api),
            "orchestrator_http_request_duration_seconds_count",
            method="GET",
            route="/metrics",
            status="200",
        )
        == 1
    )


def test_an_event_stream_is_timed_to_its_start_not_its_end(api: httpx.Client) -> None:
    with api.stream("GET", "/events") as stream:
        assert stream.status_code == 200
        time.sleep(2.5)
        # Observed when the response started, so it shows while the stream is open.
        samples = scrape(api)

    labels = {"method": "GET", "route": "/events", "status": "200"}
    assert value(samples, "orchestrator_http_request_duration_seconds_count", **labels) == 1
    assert value(samples, "orchestrator_http_request_duration_seconds_sum", **labels) < 1.0


@pytest.mark.usefixtures("dists")
def test_plugin_load_failures_of_the_api_and_of_each_worker(
    start_api: ApiFactory, broken_plugin_workers: Workers
) -> None:
    api = start_api(plugins=("demo", "brokenimport"))
    worker = broken_plugin_workers.start(concurrency=1, types=DEMO_TYPES)

    samples = wait_for_workers(api, 1)

    assert series(samples, "orchestrator_plugin_load_failures") == {(("process", "api"),): 1}
    name = worker_name(worker.process.pid)
    assert series(samples, "orchestrator_worker_plugin_load_failures") == {(("worker", name),): 1}
    assert series(samples, "orchestrator_worker_concurrency") == {(("worker", name),): 1}


def test_metrics_need_the_api_key_when_keys_are_set(start_api: ApiFactory) -> None:
    client = start_api(api_keys=("k-metrics",))

    refused = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    samples = scrape(client, headers={"Authorization": "Bearer k-metrics"})

    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert value(samples, "orchestrator_store_up") == 1
    # Refused requests are timed like any other.
    counts = series(samples, "orchestrator_http_request_duration_seconds_count")
    assert counts[(("method", "GET"), ("route", "/metrics"), ("status", "401"))] == 2


@pytest.mark.parametrize("redis_fault", ["refused", "hung"])
def test_without_redis_the_scrape_says_store_down_and_keeps_process_figures(
    start_api: ApiFactory, closed_port: int, hung_server: int, redis_fault: str
) -> None:
    port = closed_port if redis_fault == "refused" else hung_server
    api = start_api(redis_url=f"redis://127.0.0.1:{port}/0")
    assert api.get("/jobs/00000000-0000-4000-8000-000000000000").status_code == 503

    samples = scrape(api)

    assert value(samples, "orchestrator_store_up") == 0
    assert not job_figures(samples), "no job or worker figure can be read without Redis"
    assert value(samples, "orchestrator_plugin_load_failures", process="api") == 0
    counts = series(samples, "orchestrator_http_request_duration_seconds_count")
    assert counts == {(("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "503")): 1}
