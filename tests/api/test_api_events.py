"""``/events`` and ``/jobs/{id}/events`` served by a real uvicorn over the real Redis.

Transitions are made through the store, as the worker makes them, so each test
controls their order and timing; the tests at the end run real jobs on a real worker.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiserver import Served, served
from cleanup import delete_broker_objects, delete_keys, job_queues
from journeys import ERROR, completed_after_a_retry
from netfaults import TcpProxy
from processes import stop_group
from starlette.types import ASGIApp, Receive, Scope, Send

from api.main import create_app
from orchestrator_client import parse_event_stream
from orchestrator_core import Settings, State, load_plugins, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.telemetry.events import EventLog

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
EVENT_KEYS = {"id", "job_id", "type", "state", "from", "at", "attempt", "seq", "reason"}


# --- A server of our own, and streams read on threads ----------------------------------


@dataclass
class Stream:
    """An open event stream, read on a thread of its own as the messages come."""

    response: httpx.Response
    events: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        try:
            for message in parse_event_stream(self.response.iter_lines()):
                if message.comment is not None:
                    self.comments.append(message.comment)
                elif message.event == "transition":
                    self.ids.append(str(message.id))
                    self.events.append(message.json())
                elif message.event == "progress":
                    self.progress.append(message.json())
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.response.close()
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} of {count}: {self.events}"
            assert not self.ended.is_set() or len(self.events) >= count, self.error
            time.sleep(0.01)
        return self.events

    def wait_ended(self, timeout: float = 10) -> None:
        assert self.ended.wait(timeout), "the stream did not end"

    def states(self) -> list[str]:
        return [event["state"] for event in self.events]

    def disconnect(self) -> None:
        """Hang up, as a client that goes away does."""
        sock = self.response.extensions["network_stream"].get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self.ended.wait(5)


def open_stream(client: httpx.Client, path: str, **headers: str) -> Stream:
    """Open an event stream and start reading it; fails unless the API answered 200."""
    response = client.send(client.build_request("GET", path, headers=headers), stream=True)
    if response.status_code != 200:
        response.read()
        response.close()
        raise AssertionError(f"{response.status_code} {response.text}")
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    stream = Stream(response)
    threading.Thread(target=stream.read, daemon=True).start()
    return stream


@dataclass
class Api:
    served: Served
    app: Any
    client: httpx.Client
    streams: list[Stream] = field(default_factory=list)

    @property
    def fanout(self) -> Any:
        return self.app.state.api.fanout

    @property
    def port(self) -> int:
        return int(self.served.url.rsplit(":", 1)[1])

    def open(self, path: str, **headers: str) -> Stream:
        stream = open_stream(self.client, path, **headers)
        self.streams.append(stream)
        return stream


ApiStarter = Callable[..., Api]


@pytest.fixture
def events_api(api_settings: Settings) -> Iterator[ApiStarter]:
    """Starts an API with ``api_settings`` changed by keyword (``fanout_<name>`` sets that
    attribute of its fan-out); stopping it at the end also ends its open streams."""
    apis: list[Api] = []
    with ExitStack() as stack:

        def start(**overrides: Any) -> Api:
            tuning = {
                name.removeprefix("fanout_"): overrides.pop(name)
                for name in list(overrides)
                if name.startswith("fanout_")
            }
            send_buffer = overrides.pop("send_buffer", None)
            app = create_app(load_settings(**{**api_settings.model_dump(), **overrides}))
            for name, value in tuning.items():
                setattr(app.state.api.fanout, name, value)
            server = stack.enter_context(served(app, send_buffer=send_buffer))
            api = Api(server, app, httpx.Client(base_url=server.url, timeout=10))
            apis.append(api)
            return api

        yield start
    for api in apis:
        for stream in api.streams:
            stream.ended.wait(5)
        api.client.close()


# --- One job's stream ---------------------------------------------------------------------


def test_a_jobs_stream_replays_its_history_then_follows_it_to_the_end(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    api = events_api()
    job = jobs_store.create("demo.echo", {}, max_attempts=3)
    jobs_store.start(job.id, 1, "w1")
    stream = api.open(f"/jobs/{job.id}/events")
    stream.wait_for(2)
    jobs_store.transition(job.id, State.RETRYING, fence="w1", error=ERROR, reason="attempt failed")
    jobs_store.start(job.id, 2, "w2")
    jobs_store.transition(job.id, State.COMPLETED, fence="w2", result={"ok": True})

    stream.wait_ended()
    assert stream.error is None
    history = jobs_store.get(job.id).history
    assert stream.events == [
        {
            "id": str(seq),
            "job_id": job.id,
            "type": "demo.echo",
            "state": entry.state.value,
            "from": history[seq - 2].state.value if seq > 1 else None,
            "at": entry.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "attempt": entry.attempt,
            "seq": seq,
            "reason": entry.reason,
        }
        for seq, entry in enumerate(history, start=1)
    ]
    assert stream.states() == ["CREATED", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"]
    assert stream.ids == ["1", "2", "3", "4", "5"]


def test_a_jobs_stream_resumes_after_last_event_id(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    api = events_api()
    done = completed_after_a_retry(jobs_store)
    running = jobs_store.create("demo.echo", {}, max_attempts=3)
    jobs_store.start(running.id, 1, "w1")

    rest = api.open(f"/jobs/{done}/events", **{"Last-Event-ID": "3"})
    nothing_left = api.open(f"/jobs/{done}/events", **{"Last-Event-ID": "5"})
    live = api.open(f"/jobs/{running.id}/events", **{"Last-Event-ID": "1"})
    live.wait_for(1)
    jobs_store.transition(running.id, State.CANCELLED, fence="w1", reason="cancelled")

    for stream in (rest, nothing_left, live):
        stream.wait_ended()
    assert [(e["seq"], e["state"]) for e in rest.events] == [(4, "RUNNING"), (5, "COMPLETED")]
    assert rest.ids == ["4", "5"]
    assert nothing_left.events == []
    assert [(e["seq"], e["state"]) for e in live.events] == [(2, "RUNNING"), (3, "CANCELLED")]


# --- Every job's stream ---------------------------------------------------------------------


def test_events_resume_with_last_event_id_gives_exactly_the_missing_ones(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    api = events_api()
    log = EventLog(jobs_store.redis, jobs_store.keys)
    start = log.last_id()
    first = api.open("/events")
    completed_after_a_retry(jobs_store)
    seen = first.wait_for(5)
    first.disconnect()
    completed_after_a_retry(jobs_store)  # while nobody listens

    resumed = api.open("/events", **{"Last-Event-ID": first.ids[-1]})
    middle = api.open("/events", **{"Last-Event-ID": first.ids[1]})
    resumed.wait_for(5)
    completed_after_a_retry(jobs_store)  # live again
    resumed.wait_for(10)
    middle.wait_for(13)

    everything = [event.as_json() for event in log.read(start)]
    assert seen == everything[:5]
    assert resumed.events == everything[5:]
    assert middle.events == everything[2:]
    assert resumed.ids == [event["id"] for event in everything[5:]]
    time.sleep(0.2)
    assert len(resumed.events) == 10, "nothing twice"


def test_events_start_with_what_happens_next(events_api: ApiStarter, jobs_store: JobStore) -> None:
    api = events_api()
    before = completed_after_a_retry(jobs_store)
    stream = api.open("/events")
    after = completed_after_a_retry(jobs_store)
    stream.wait_for(5)
    assert {event["job_id"] for event in stream.events} == {after} != {before}
    assert all(set(event) == EVENT_KEYS for event in stream.events)


def test_events_filter_by_type_and_state(events_api: ApiStarter, jobs_store: JobStore) -> None:
    api = events_api()
    streams = {
        "all": api.open("/events"),
        "fail": api.open("/events?type=demo.fail"),
        "completed": api.open("/events?state=COMPLETED"),
        "echo running": api.open("/events?type=demo.echo&state=RUNNING"),
    }
    echo = completed_after_a_retry(jobs_store, "demo.echo")
    failing = jobs_store.create("demo.fail", {}, max_attempts=1)
    jobs_store.start(failing.id, 1, "w1")
    jobs_store.transition(failing.id, State.FAILED, fence="w1", error=ERROR, reason="failed")
    done = completed_after_a_retry(jobs_store, "demo.fail")

    expected = {
        "all": 13,
        "fail": 8,
        "completed": 2,
        "echo running": 2,
    }
    for name, count in expected.items():
        streams[name].wait_for(count)
    time.sleep(0.2)  # anything unwanted would have come by now
    pairs = {name: [(e["job_id"], e["state"]) for e in s.events] for name, s in streams.items()}
    assert pairs["fail"] == [p for p in pairs["all"] if p[0] in (failing.id, done)]
    assert pairs["completed"] == [(echo, "COMPLETED"), (done, "COMPLETED")]
    assert pairs["echo running"] == [(echo, "RUNNING"), (echo, "RUNNING")]


def test_bad_filters_ids_and_jobs_are_refused(events_api: ApiStarter) -> None:
    api = events_api()
    unknown_state = api.client.get("/events", params={"state": "DONE"})
    assert unknown_state.status_code == 422
    assert "valid states: CREATED, RUNNING" in unknown_state.json()["detail"]
    bad_type = api.client.get("/events", params={"type": "Not A Type"})
    assert bad_type.status_code == 422
    assert "malformed job type" in bad_type.json()["detail"]
    bad_id = api.client.get("/events", headers={"Last-Event-ID": "yesterday"})
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"] == "not an event id: 'yesterday' (expected <ms>-<n>)"

    missing = str(uuid.uuid4())
    gone = api.client.get(f"/jobs/{missing}/events")
    assert gone.status_code == 404
    assert gone.json() == api.client.get(f"/jobs/{missing}").json()
    assert api.client.get("/jobs/not-a-uuid/events").status_code == 404
    stream_id_for_a_job = api.client.get(
        f"/jobs/{missing}/events", headers={"Last-Event-ID": "1700000000000-0"}
    )
    assert stream_id_for_a_job.status_code == 422
    assert "not an event id of this job" in stream_id_for_a_job.json()["detail"]
    assert api.fanout.subscribers == 0, "a refused stream leaves no subscription"


def test_streams_need_the_api_key(events_api: ApiStarter, jobs_store: JobStore) -> None:
    api = events_api(api_keys="k1")
    job_id = completed_after_a_retry(jobs_store)
    for path in ("/events", f"/jobs/{job_id}/events"):
        refused = api.client.get(path)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = api.client.get(path, headers={"Authorization": "Bearer k2"})
        assert wrong.status_code == 401
    stream = api.open(f"/jobs/{job_id}/events", Authorization="Bearer k1")
    stream.wait_ended()
    assert len(stream.events) == 5


# --- Many readers, slow readers ------------------------------------------------------------


def test_two_readers_get_everything_and_a_slow_one_is_cut_off_alone(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    api = events_api(fanout_capacity=200, fanout_batch=50, send_buffer=16384)
    log = EventLog(jobs_store.redis, jobs_store.keys)
    start = log.last_id()
    fast = [api.open("/events"), api.open("/events")]
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", api.port))
    slow.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    deadline = time.monotonic() + 5
    while api.fanout.subscribers < 3:
        assert time.monotonic() < deadline, "the slow reader never subscribed"
        time.sleep(0.01)

    burst = 1500
    for _ in range(burst):  # one CREATED event each; the slow reader reads none of them
        jobs_store.create("demo.echo", {}, max_attempts=1)

    ids = [event.id for event in log.read(start, count=burst)]
    for stream in fast:
        stream.wait_for(burst, timeout=30)
        assert stream.ids == ids
    # The slow reader was dropped: its stream ends early, and so does its connection.
    slow.settimeout(10)
    received = b""
    while chunk := slow.recv(65536):
        received += chunk
    slow.close()
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.count(b"event: transition") < burst
    assert api.fanout.subscribers == 2
    assert not any(stream.ended.is_set() for stream in fast)


# --- Redis away, server stopping, history trimmed --------------------------------------------


@pytest.mark.parametrize("fault", ["refuse", "hang"])
def test_redis_away_mid_stream_loses_no_event(
    events_api: ApiStarter, jobs_store: JobStore, fault: str
) -> None:
    proxy = TcpProxy(("127.0.0.1", 6379))
    try:
        api = events_api(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", fanout_keepalive_seconds=0.2
        )
        log = EventLog(jobs_store.redis, jobs_store.keys)
        start = log.last_id()
        every = api.open("/events")
        job = jobs_store.create("demo.echo", {}, max_attempts=3)
        one = api.open(f"/jobs/{job.id}/events")
        one.wait_for(1)
        every.wait_for(1)

        proxy.set_mode(fault)
        jobs_store.start(job.id, 1, "w1")
        jobs_store.transition(job.id, State.RETRYING, fence="w1", error=ERROR, reason="lost")
        other = completed_after_a_retry(jobs_store)
        keepalives = len(every.comments)
        time.sleep(1.5)
        assert len(every.comments) > keepalives, "keepalives go on while Redis is away"
        assert len(every.events) == 1
        proxy.set_mode("forward")
        jobs_store.start(job.id, 2, "w2")
        jobs_store.transition(job.id, State.COMPLETED, fence="w2", result={})

        one.wait_ended(timeout=20)
        every.wait_for(10, timeout=20)
    finally:
        proxy.close()
    everything = [event.as_json() for event in log.read(start)]
    assert every.events == everything
    assert len(everything) == 10
    assert [e["job_id"] for e in everything].count(other) == 5
    assert one.states() == ["CREATED", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"]


def test_a_stream_opened_while_redis_is_down_is_503(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    proxy = TcpProxy(("127.0.0.1", 6379))
    try:
        api = events_api(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        job_id = completed_after_a_retry(jobs_store)
        proxy.set_mode("refuse")
        for path in ("/events", f"/jobs/{job_id}/events"):
            answer = api.client.get(path)
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "5"
            assert answer.json() == {"detail": "Redis is unavailable; try again shortly"}
        proxy.set_mode("forward")
        stream = api.open(f"/jobs/{job_id}/events")
        stream.wait_ended()
        assert len(stream.events) == 5
    finally:
        proxy.close()


def test_the_api_stops_promptly_with_streams_open(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    api = events_api()
    job = jobs_store.create("demo.echo", {}, max_attempts=3)
    streams = [api.open("/events"), api.open(f"/jobs/{job.id}/events?progress=true")]
    streams[1].wait_for(1)

    took = api.served.stop()

    assert took < 3, f"stopping took {took:.1f} s"
    for stream in streams:
        stream.wait_ended(timeout=2)
        assert stream.error is None, "each stream was ended properly"


def test_a_resume_point_the_cap_has_trimmed_is_announced(
    events_api: ApiStarter, jobs_store: JobStore
) -> None:
    api = events_api()
    store = JobStore(jobs_store.redis, prefix=jobs_store.keys.prefix, events_max_length=1000)
    log = EventLog(store.redis, store.keys)
    store.create("demo.echo", {}, max_attempts=1)
    oldest = log.last_id()
    for _ in range(1500):
        store.create("demo.echo", {}, max_attempts=1)
    kept = log.read("0-0", count=1)[0].id

    stream = api.open("/events", **{"Last-Event-ID": oldest})
    stream.wait_for(100)
    assert (
        stream.comments[0] == f"trimmed: events after {oldest} and before {kept} are no longer kept"
    )
    assert stream.ids[0] == kept


# --- Real jobs on a real worker ---------------------------------------------------------


@pytest.fixture(scope="module")
def worker_settings() -> Iterator[Settings]:
    settings = load_settings(prefix=f"test-{uuid.uuid4().hex[:12]}", plugins="demo")
    yield settings
    client = connect_redis(settings)
    delete_keys(client, settings.prefix)
    client.close()
    queues = job_queues(settings.prefix, load_plugins(allow=settings.plugins))
    delete_broker_objects(settings.broker_url, settings.prefix, queues)


@pytest.fixture(scope="module")
def worker(worker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    log = tmp_path_factory.mktemp("events-worker") / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_PREFIX=worker_settings.prefix,
        ORCHESTRATOR_PLUGINS="demo",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ORCHESTRATOR), "--log-level", "INFO", "worker", "--concurrency", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield
    finally:
        stop_group(process)


class Counting:
    """Counts the requests that reach ``app``, by method and path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@contextmanager
def worker_api(settings: Settings) -> Iterator[tuple[str, Counting]]:
    counting = Counting(create_app(settings))
    with served(counting) as server:
        yield server.url, counting


def test_a_real_jobs_stream_shows_every_transition_through_a_retry(
    worker_settings: Settings, worker: None
) -> None:
    with ExitStack() as stack:
        url, _ = stack.enter_context(worker_api(worker_settings))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=10))
        every = open_stream(client, "/events?type=demo.fail")
        created = client.post("/jobs", json={"type": "demo.fail", "payload": {"times": 1}})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        one = open_stream(client, f"/jobs/{job_id}/events")
        one.wait_ended(timeout=30)
        every.wait_for(5)
        every.disconnect()
    assert one.states() == ["CREATED", "RUNNING", "RETRYING", "RUNNING", "COMPLETED"]
    assert [e["seq"] for e in one.events] == [1, 2, 3, 4, 5]
    assert [e["attempt"] for e in one.events] == [0, 1, 1, 2, 2]
    assert one.events[2]["reason"]
    assert [e["state"] for e in every.events] == one.states()
    assert [e["at"] for e in every.events] == [e["at"] for e in one.events]


@pytest.mark.parametrize(
    ("command", "code", "last"),
    [
        (["demo.sleep", '{"seconds": 1, "steps": 4}'], 0, "COMPLETED  attempts 1/3"),
        # Two failed attempts with a pause between: the wait sees it all, exits 1.
        (["demo.fail", '{"times": 2}', "--max-attempts", "2"], 1, "FAILED  attempts 2/2"),
    ],
)
def test_submit_wait_follows_the_stream_instead_of_polling(
    worker_settings: Settings, worker: None, command: list[str], code: int, last: str
) -> None:
    with worker_api(worker_settings) as (url, counting):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        done = subprocess.run(
            [str(ORCHESTRATOR), "submit", *command, "--wait"],
            env={**env, "ORCHESTRATOR_API_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        history = httpx.get(f"{url}/jobs/{done.stdout.split()[1]}", timeout=5).json()["history"]
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    job_id = lines[0].split()[1]
    assert lines[-2].endswith(f"  {last}"), lines
    reads = counting.requests.count(("GET", f"/jobs/{job_id}"))
    assert counting.requests.count(("GET", f"/jobs/{job_id}/events")) == 1
    # One read to start, then at most one per transition (polling would read every 0.2 s).
    assert reads <= len(history), counting.requests
    if code == 0:
        assert any("  RUNNING  attempts 1/3  progress " in line for line in lines), lines
    else:
        assert any("  RETRYING  " in line for line in lines), lines


def finish_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_submit_wait_rides_out_a_restart_of_the_api(
    worker_settings: Settings, worker: None
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    with ExitStack() as cleanup:
        with served(create_app(worker_settings)) as first:
            process = subprocess.Popen(
                [str(ORCHESTRATOR), "submit", "demo.sleep", '{"seconds": 2, "steps": 2}', "--wait"],
                env={**env, "ORCHESTRATOR_API_URL": first.url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            cleanup.callback(finish_process, process)
            assert process.stdout is not None
            job_id = process.stdout.readline().split()[1]
            deadline = time.monotonic() + 20
            while httpx.get(f"{first.url}/jobs/{job_id}", timeout=5).json()["state"] != "RUNNING":
                assert time.monotonic() < deadline, "the job did not start"
                time.sleep(0.05)
        # The API has stopped while the client follows the job; it comes back shortly.
        time.sleep(0.5)
        with served(create_app(worker_settings), port=int(first.url.rsplit(":", 1)[1])):
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0, out + err
    lines = out.splitlines()
    assert lines[-2] == f"job {job_id}  demo.sleep  COMPLETED  attempts 1/3"
    assert lines[-1] == 'result: {"slept": 2.0}'
    assert len(lines) == len(set(lines)), "nothing shown twice"
    assert err == ""
