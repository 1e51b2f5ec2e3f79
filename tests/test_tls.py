"""Redis and RabbitMQ over TLS: ``rediss://`` and ``amqps://`` with ``ORCHESTRATOR_TLS_CA_FILE``.

Servers of the tests' own on loopback (a TLS-only redis-server per test, a RabbitMQ node
with a TLS listener per module) present certificates of a throwaway authority that no
system store trusts: with the authority's file a connection works, without it (the
system's store) it is refused, and so is a certificate for another name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from brokers import RabbitNode
from cleanup import delete_broker_objects, job_queues
from processes import free_port, stop_group
from tls import (
    Certificates,
    TlsRedis,
    make_certificates,
    rabbit_tls_listener,
    tls_redis,
)

from orchestrator_core import (
    BrokerUnavailableError,
    ConfigurationError,
    State,
    StoreUnavailableError,
    load_plugins,
)
from orchestrator_core.dispatch.broker import broker_connection, broker_ssl, celery_config
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


@dataclass
class Running:
    """The ``orchestrator`` processes of a test, the API's client and every log."""

    api: httpx.Client
    logs: dict[str, Path]

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


@contextmanager
def running(directory: Path, names: tuple[str, ...], **settings: str) -> Iterator[Running]:
    """``orchestrator api`` and/or ``orchestrator worker`` with ``settings`` (variable names
    without ``ORCHESTRATOR_``), once each has started; stopped by process group after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({f"ORCHESTRATOR_{name.upper()}": value for name, value in settings.items()})
    port = free_port()
    commands = {
        "api": ["--log-level", "INFO", "api", "--port", str(port), "--workers", "1"],
        "worker": ["--log-level", "INFO", "worker", "--concurrency", "1"],
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = {name: directory / f"{name}.log" for name in names}
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        for name in names:
            with logs[name].open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [str(ORCHESTRATOR), *commands[name]],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        up = Running(client, logs)
        deadline = time.monotonic() + 60
        while ("worker" in names and " ready." not in up.log("worker")) or (
            "api" in names and not _answers(client)
        ):
            assert all(p.poll() is None for p in processes), "a process exited at start"
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.1)
        yield up
    finally:
        client.close()
        for process in processes:
            stop_group(process)
        for name, log in logs.items():
            print(f"--- {name}\n{log.read_text(errors='replace')[-4000:]}")


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """One throwaway authority and server certificate for the module's servers."""
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def redis_tls(certificates: Certificates, tmp_path: Path) -> Iterator[TlsRedis]:
    # 127.0.0.2 is loopback too, and a name the certificate does not carry.
    with tls_redis(certificates, tmp_path, addresses=("127.0.0.1", "127.0.0.2")) as server:
        yield server


def tls_settings(url: str, ca_file: Path | None, **overrides: Any) -> Settings:
    return load_settings(
        prefix=f"test-{uuid.uuid4().hex[:12]}",
        redis_url=url,
        tls_ca_file=str(ca_file) if ca_file else None,
        redis_socket_timeout=2.0,
        redis_connect_timeout=2.0,
        **overrides,
    )


# --- Redis -------------------------------------------------------------------------


def test_the_store_works_over_rediss_with_the_ca_file(
    redis_tls: TlsRedis, certificates: Certificates
) -> None:
    store = JobStore.from_settings(tls_settings(redis_tls.url(), certificates.ca_file))
    job = store.create("t.demo", {"n": 1}, max_attempts=1)  # the store's thread connections
    assert store.get(job.id).state is State.CREATED
    assert store.redis.ping() is True  # the client's own pool
    with store.redis.pubsub() as pubsub:  # how the worker hears cancel requests
        pubsub.subscribe("tls-check")
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert store.redis.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"


def test_without_the_ca_file_an_untrusted_redis_is_refused_naming_tls(redis_tls: TlsRedis) -> None:
    store = JobStore.from_settings(tls_settings(redis_tls.url(), None))
    with pytest.raises(StoreUnavailableError, match="TLS with Redis failed") as refused:
        store.get(str(uuid.uuid4()))
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert "ORCHESTRATOR_TLS_CA_FILE" in str(refused.value)
    with pytest.raises(StoreUnavailableError, match="TLS with Redis failed"):
        store.create("t.demo", {}, max_attempts=1)


def test_a_redis_certificate_for_another_host_is_refused(
    redis_tls: TlsRedis, certificates: Certificates
) -> None:
    store = JobStore.from_settings(tls_settings(redis_tls.url("127.0.0.2"), certificates.ca_file))
    with pytest.raises(StoreUnavailableError, match=re.escape("not valid for '127.0.0.2'")):
        store.get(str(uuid.uuid4()))


def test_the_api_reports_an_untrusted_redis_as_down_and_says_why(
    redis_tls: TlsRedis, tmp_path: Path
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    with running(
        tmp_path, ("api",), prefix=prefix, plugins="demo", redis_url=redis_tls.url()
    ) as up:
        ready = up.api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["redis"].startswith("down")
        assert up.api.get(f"/jobs/{uuid.uuid4()}").status_code == 503
        deadline = time.monotonic() + 10
        while "TLS with Redis failed" not in up.log("api"):
            assert time.monotonic() < deadline, up.log("api")
            time.sleep(0.05)
        assert "CERTIFICATE_VERIFY_FAILED" in up.log("api")


# --- A bad CA file -------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["missing", "not PEM", "a folder"])
def test_a_bad_ca_file_is_a_configuration_error(tmp_path: Path, problem: str) -> None:
    path = {"missing": tmp_path / "nowhere.pem", "a folder": tmp_path}.get(problem)
    if path is None:
        path = tmp_path / "junk.pem"
        path.write_text("not a certificate\n")
    settings = tls_settings("rediss://localhost:6380/0", path)
    for connect in (connect_redis, celery_config, broker_ssl):
        with pytest.raises(ConfigurationError, match="ORCHESTRATOR_TLS_CA_FILE") as bad:
            connect(settings)
        assert str(path) in str(bad.value)


@pytest.mark.parametrize("command", [["worker", "--concurrency", "1"], ["api", "--port", "0"]])
def test_the_services_refuse_to_start_with_a_bad_ca_file(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "missing-ca.pem"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_PREFIX=f"test-{uuid.uuid4().hex[:12]}",
        ORCHESTRATOR_PLUGINS="demo",
        ORCHESTRATOR_TLS_CA_FILE=str(missing),
        # Never reached: the services stop at the setting before connecting anywhere.
        ORCHESTRATOR_REDIS_URL=f"rediss://localhost:{free_port()}/0",
        ORCHESTRATOR_BROKER_URL=f"amqps://guest:guest@localhost:{free_port()}//",
    )
    done = subprocess.run(
        [str(ORCHESTRATOR), *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "orchestrator: error: ORCHESTRATOR_TLS_CA_FILE" in done.stderr
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr


# --- RabbitMQ, and the whole system ----------------------------------------------------


@pytest.fixture(scope="module")
def rabbit(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RabbitTls]:
    """A private node with a TLS listener (and the plain one it is started and cleaned
    through), shared by this module's tests: each uses its own prefix."""
    port = free_port()
    node = RabbitNode(
        tmp_path_factory.mktemp("rabbit"),
        config_lines=rabbit_tls_listener(certificates, port),
    )
    node.start()
    try:
        yield RabbitTls(node, port)
    finally:
        node.stop()


@dataclass(frozen=True)
class RabbitTls:
    node: RabbitNode
    port: int

    def url(self, host: str = "localhost") -> str:
        return f"amqps://guest:guest@{host}:{self.port}//"


def probe(settings: Settings) -> str:
    """What the readiness probe's connection makes of the broker: "ok" or the error."""
    try:
        with broker_connection(settings, connect_timeout=5, heartbeat=0) as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
            return "ok"
    except Exception as exc:  # kombu raises the transport's own errors
        return f"{type(exc).__name__}: {exc}"


def test_the_broker_is_reached_over_amqps_with_the_ca_file(
    rabbit: RabbitTls, certificates: Certificates
) -> None:
    """The port speaks TLS only: the probe's connection and the publisher's (which the
    Celery app makes) get an answer only with the TLS options."""
    settings = tls_settings("redis://localhost/0", certificates.ca_file, broker_url=rabbit.url())
    assert probe(settings) == "ok"
    publisher = Publisher.from_settings(settings)
    try:
        publisher.publish(str(uuid.uuid4()), 1, f"{settings.prefix}.t.demo")  # confirmed
    finally:
        publisher.close()
        delete_broker_objects(rabbit.node.url, settings.prefix, [f"{settings.prefix}.t.demo"])


@pytest.mark.parametrize(
    ("host", "with_ca", "refusal"),
    [
        ("localhost", False, "self-signed certificate in certificate chain"),
        ("127.0.0.2", True, "certificate is not valid for '127.0.0.2'"),
    ],
    ids=["untrusted", "another host"],
)
def test_an_untrusted_or_misnamed_broker_is_refused(
    rabbit: RabbitTls, certificates: Certificates, host: str, with_ca: bool, refusal: str
) -> None:
    ca_file = certificates.ca_file if with_ca else None
    settings = tls_settings("redis://localhost/0", ca_file, broker_url=rabbit.url(host))
    found = probe(settings)
    assert "CERTIFICATE_VERIFY_FAILED" in found
    assert refusal in found
    publisher = Publisher.from_settings(settings)
    try:
        with pytest.raises(BrokerUnavailableError, match="CERTIFICATE_VERIFY_FAILED") as refused:
            publisher.publish(str(uuid.uuid4()), 1, f"{settings.prefix}.t.demo")
        assert refusal in str(refused.value)
    finally:
        publisher.close()


def test_a_job_runs_end_to_end_over_rediss_and_amqps(
    redis_tls: TlsRedis, certificates: Certificates, rabbit: RabbitTls, tmp_path: Path
) -> None:
    """The API and a worker as deployed, with nothing but TLS ports to talk to."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        with running(
            tmp_path,
            ("api", "worker"),
            prefix=prefix,
            plugins="demo",
            redis_url=redis_tls.url(),
            broker_url=rabbit.url(),
            tls_ca_file=str(certificates.ca_file),
        ) as up:
            created = up.api.post("/jobs", json={"type": "demo.echo", "payload": {"message": "hi"}})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            deadline = time.monotonic() + 30
            while (job := up.api.get(f"/jobs/{job_id}").json())["state"] != "COMPLETED":
                assert job["state"] not in ("FAILED", "CANCELLED"), job
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert job["result"]["message"] == "hi"
            assert up.api.get("/readyz").json()["redis"] == "ok"
    finally:
        delete_broker_objects(
            rabbit.node.url, prefix, job_queues(prefix, load_plugins(allow=["demo"]))
        )
