"""Secret payload fields through the system as deployed: `orchestrator api` and
`orchestrator worker` as real processes, with and without the payload keys.

No answer, event, listing, CLI output or log line holds a secret, nor does Redis in
clear; the worker's ``execute`` still gets the real values (the job's result is their
SHA-256), under key rotation too; and a worker that cannot open a job's sealed copy
fails the job, once, naming ``ORCHESTRATOR_PAYLOAD_KEY``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, job_queues
from cryptography.fernet import Fernet
from processes import stop_group
from services import require_broker

from orchestrator_core import Job, JobType, State, load_plugins, load_settings
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import submit
from orchestrator_core.sealing import Sealer
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "secrets"
PLUGIN = "secrettest"
NEW_KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()
MASK = "**********"

TOKEN = "tok-7f3a9c-secret"
PASSWORD = "pw-b81e44-secret"
SPARE = "pw-spare-5d20c1-secret"
OTHER = "pw-other-90ab17-secret"
SECRETS = (TOKEN, PASSWORD, SPARE, OTHER)


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def login(password: str = PASSWORD, token: str = TOKEN) -> dict[str, Any]:
    return {
        "url": "https://login.invalid/",
        "token": token,
        "credentials": {"user": "ann", "password": password},
        "spare": [{"user": "bob", "password": SPARE}],
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class System:
    """The test's API and worker processes, each with the payload keys it is given."""

    settings: Settings
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def env(self, payload_key: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        env.update(
            ORCHESTRATOR_PREFIX=self.settings.prefix,
            ORCHESTRATOR_PLUGINS=PLUGIN,
            ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2",
            PYTHONPATH=os.pathsep.join([str(FIXTURES), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
        )
        if payload_key is not None:
            env["ORCHESTRATOR_PAYLOAD_KEY"] = payload_key
        return env

    def _start(self, name: str, command: list[str], payload_key: str | None) -> Path:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    [str(ORCHESTRATOR), "--log-level", "INFO", *command],
                    env=self.env(payload_key),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        self.logs[name] = log
        return log

    def worker(self, name: str, *, payload_key: str | None) -> subprocess.Popen[bytes]:
        log = self._start(name, ["worker", "--concurrency", "2"], payload_key)
        process = self.processes[-1]
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            assert process.poll() is None, f"the worker exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)
        return process

    def api(self, *, payload_key: str | None) -> httpx.Client:
        port = free_port()
        self._start("api", ["api", "--port", str(port)], payload_key)
        process = self.processes[-1]
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 60
        while not _answers(client):
            log = self.logs["api"].read_text(errors="replace")
            assert process.poll() is None, f"the API exited:\n{log}"
            assert time.monotonic() < deadline, f"the API did not start:\n{log}"
            time.sleep(0.1)
        return client

    def cli(self, *args: str) -> str:
        env = self.env(None)
        env["ORCHESTRATOR_API_URL"] = self.api_url
        done = subprocess.run(
            [str(ORCHESTRATOR), *args], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    api_url: str = ""

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs.values())


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def secret_settings(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.syspath_prepend(str(FIXTURES))  # the test's plugin, found by entry point
    configured = load_settings(prefix=settings.prefix, plugins=PLUGIN)
    require_broker(configured.broker_url)
    yield configured
    queues = job_queues(configured.prefix, load_plugins(allow=[PLUGIN]))
    delete_broker_objects(configured.broker_url, configured.prefix, queues)


@pytest.fixture
def system(secret_settings: Settings, tmp_path: Path) -> Iterator[System]:
    started = System(secret_settings, tmp_path)
    yield started
    for process in started.processes:
        stop_group(process)
    for name, log in started.logs.items():
        print(f"--- {name}\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture
def job_type(secret_settings: Settings) -> JobType:
    return load_plugins(allow=[PLUGIN]).get("st.login").job_type


@pytest.fixture
def store(secret_settings: Settings) -> JobStore:
    return JobStore.from_settings(secret_settings)


@pytest.fixture
def publisher(secret_settings: Settings) -> Iterator[Publisher]:
    publisher = Publisher.from_settings(secret_settings)
    yield publisher
    publisher.close()


def wait(store: JobStore, job_id: str, state: State, timeout: float = 30) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if job.state is state:
            return job
        assert time.monotonic() < deadline, f"job stayed {job.state}: {job}"
        time.sleep(0.05)


def assert_no_secret(text: str, where: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert leaked == [], f"{where} shows {leaked}"


def events_until(client: httpx.Client, job_ids: set[str]) -> str:
    """``GET /events`` from the start of the stream until every one of ``job_ids`` has
    COMPLETED; the raw text of the stream."""
    lines: list[str] = []
    waiting = set(job_ids)
    with client.stream("GET", "/events", headers={"Last-Event-ID": "0-0"}) as stream:
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:"))
                if event["state"] == "COMPLETED":
                    waiting.discard(event["job_id"])
            if not waiting:
                break
    return "\n".join(lines)


def test_secret_fields_show_nowhere_and_reach_execute(
    system: System,
    job_type: JobType,
    store: JobStore,
    publisher: Publisher,
    redis_client: redis.Redis,
) -> None:
    keys = f"{NEW_KEY},{OLD_KEY}"
    system.worker("worker", payload_key=keys)
    api = system.api(payload_key=keys)
    system.api_url = str(api.base_url)

    body = {"type": "st.login", "payload": login()}
    created = api.post("/jobs", json=body, headers={"Idempotency-Key": "login-1"})
    assert created.status_code == 201, created.text
    assert_no_secret(created.text, "POST /jobs")
    job_id = created.json()["id"]
    assert created.json()["payload"]["token"] == MASK
    assert created.json()["payload"]["credentials"] == {"user": "ann", "password": MASK}

    repeat = api.post("/jobs", json=body, headers={"Idempotency-Key": "login-1"})
    assert (repeat.status_code, repeat.json()["id"]) == (200, job_id)
    other = {"type": "st.login", "payload": login(password=OTHER)}
    conflict = api.post("/jobs", json=other, headers={"Idempotency-Key": "login-1"})
    assert conflict.status_code == 422
    assert_no_secret(conflict.text, "an idempotency conflict")

    too_long = api.post("/jobs", json={"type": "st.login", "payload": login(token=TOKEN * 5)})
    assert too_long.status_code == 422
    assert ["body", "payload", "token"] in [error["loc"] for error in too_long.json()["detail"]]
    assert_no_secret(too_long.text, "a 422 for a bad secret")

    batch = api.post("/jobs/batch", json={"jobs": [body, other]})
    assert batch.status_code == 201, batch.text
    assert_no_secret(batch.text, "POST /jobs/batch")
    batch_ids = [item["id"] for item in batch.json()["items"]]

    # Sealed where no key was set, and where only the old key was: the worker opens both.
    plain = submit(store, publisher, job_type, login(), sealer=Sealer()).job
    by_old = submit(store, publisher, job_type, login(), sealer=Sealer([OLD_KEY])).job

    expected = {"token": sha(TOKEN), "password": sha(PASSWORD), "spare": [sha(SPARE)]}
    for done in (job_id, batch_ids[0], plain.id, by_old.id):
        assert wait(store, done, State.COMPLETED).result == expected
    assert wait(store, batch_ids[1], State.COMPLETED).result["password"] == sha(OTHER)
    all_ids = {job_id, *batch_ids, plain.id, by_old.id}

    for path in (
        f"/jobs/{job_id}",
        "/jobs",
        "/jobs?type=st.login&state=COMPLETED",
        "/job-types",
        "/job-types/st.login",
        "/states",
        "/plugins",
        f"/jobs/{job_id}/events?progress=true",
    ):
        answer = api.get(path)
        assert answer.status_code == 200, path
        assert_no_secret(answer.text, f"GET {path}")
    assert MASK in api.get(f"/jobs/{job_id}").text
    assert_no_secret(events_until(api, all_ids), "GET /events")
    stream = redis_client.xrange(store.keys.events)
    assert stream
    assert_no_secret(json.dumps(stream), "the event stream in Redis")

    shown = system.cli("get", job_id) + system.cli("get", "--json", job_id)
    shown += system.cli("jobs", "--type", "st.login")
    assert job_id in shown
    assert_no_secret(shown, "the CLI")

    # Redis: every key of the test's prefix, whatever it holds (job hashes, indexes,
    # the idempotency record, the stream), and never a secret in clear, but for the
    # copy sealed where no key was set.
    unkeyed = redis_client.hget(store.keys.job(plain.id), "sealed")
    assert unkeyed is not None
    assert unkeyed.startswith("plain:")
    redis_client.hdel(store.keys.job(plain.id), "sealed")
    for key in redis_client.scan_iter(match=f"{store.keys.prefix}:*"):
        kind = redis_client.type(key)
        value: Any = {
            "hash": redis_client.hgetall,
            "string": redis_client.get,
            "zset": lambda k: redis_client.zrange(k, 0, -1),
            "set": redis_client.smembers,
            "list": lambda k: redis_client.lrange(k, 0, -1),
            "stream": redis_client.xrange,
        }[kind](key)
        assert_no_secret(json.dumps(value, default=sorted), f"Redis key {key}")
    for encrypted in (job_id, *batch_ids, by_old.id):
        sealed = redis_client.hget(store.keys.job(encrypted), "sealed")
        assert sealed is not None
        assert sealed.startswith("fernet:")

    logs = system.log_text()
    assert "logging in to https://login.invalid/ with" in logs  # the plugin's own line
    assert MASK in logs
    assert_no_secret(logs, "the API's and the worker's logs")


def test_a_worker_that_cannot_open_a_sealed_copy_fails_the_job_once(
    system: System, job_type: JobType, store: JobStore, publisher: Publisher
) -> None:
    def sealed_job() -> Job:
        return submit(store, publisher, job_type, login(), sealer=Sealer([NEW_KEY])).job

    keyless = system.worker("keyless", payload_key=None)
    job = wait(store, sealed_job().id, State.FAILED)
    assert job.error is not None
    assert job.error.type == "SealedPayloadError"
    assert "ORCHESTRATOR_PAYLOAD_KEY is not set" in job.error.message
    assert job.error.retryable is False
    assert (job.attempts, [entry.state for entry in job.history]) == (
        1,
        [State.CREATED, State.RUNNING, State.FAILED],
    )
    stop_group(keyless)

    system.worker("wrong-key", payload_key=Fernet.generate_key().decode())
    job = wait(store, sealed_job().id, State.FAILED)
    assert job.error is not None
    assert "none of the keys in ORCHESTRATOR_PAYLOAD_KEY decrypts" in job.error.message
    assert job.attempts == 1
    assert_no_secret(system.log_text(), "the workers' logs")


@pytest.mark.parametrize("service", ["worker", "api"])
def test_a_malformed_payload_key_stops_a_service_at_start(
    system: System, service: str, secret_settings: Settings
) -> None:
    command = [service] if service == "worker" else [service, "--port", str(free_port())]
    done = subprocess.run(
        [str(ORCHESTRATOR), *command],
        env=system.env(f"{NEW_KEY},not-a-fernet-key"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ORCHESTRATOR_PAYLOAD_KEY: key 2 of 2 is not a Fernet key" in done.stderr
    assert "not-a-fernet-key" not in done.stderr
    assert NEW_KEY not in done.stderr
