"""Redis through Sentinel: the store finds the primary, keeps working across a failover
without a restart, and fencing decides a commit that raced the failover; a Sentinel
setup that names no primary fails fast and says why, at start and in ``/readyz``."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sentinels import SentinelGroup, Server, sentinel_group, wait_until
from tls import make_certificates

from api.main import create_app
from orchestrator_core import (
    ConfigurationError,
    Settings,
    StaleLeaseError,
    State,
    StoreUnavailableError,
    load_settings,
)
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import (
    ThreadConnections,
    UnreplicatedError,
    connect_redis,
    redis_errors,
)
from orchestrator_core.store.script import source

UNUSED_URL = "redis://primary.invalid:1/0"
"""With Sentinels set the URL's host and port are never used: this one resolves nowhere."""

CONNECT_TIMEOUT = 0.5

SCRIPT_SHA = hashlib.sha1(source().encode()).hexdigest()


def through(
    settings: Settings, addresses: tuple[str, ...], master: str, **overrides: Any
) -> Settings:
    """The test's settings, with Redis reached through the Sentinels at ``addresses``."""
    chosen: dict[str, Any] = {
        "prefix": settings.prefix,
        "redis_url": UNUSED_URL,
        "redis_sentinels": ",".join(addresses),
        "redis_sentinel_master": master,
        "redis_socket_timeout": 1.0,
        "redis_connect_timeout": CONNECT_TIMEOUT,
    }
    return load_settings(**{**chosen, **overrides})


def close(client: redis.Redis) -> None:
    client.close()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if manager is not None:
        manager.close()


@contextmanager
def store_of(settings: Settings) -> Iterator[JobStore]:
    store = JobStore.from_settings(settings)
    try:
        yield store
    finally:
        close(store.redis)


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A group the tests share that none fails over: each test has its own prefix."""
    with sentinel_group(tmp_path_factory.mktemp("sentinels"), min_replicas=1) as started:
        yield started


@pytest.fixture
def own_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A group of the test's own, to fail over; its primaries refuse writes while they
    have no replica (``min-replicas-to-write 1``), as a deployment's should."""
    with sentinel_group(tmp_path, min_replicas=1) as started:
        yield started


def state_on(server: Server, store: JobStore, job_id: str) -> str | None:
    """The job's state as ``server`` itself holds it."""
    found = server.client.hget(store.keys.job(job_id), "state")
    return None if found is None else str(found)


def terminal_entries(store: JobStore, job_id: str) -> list[State]:
    return [entry.state for entry in store.get(job_id).history if entry.state.terminal]


def has_script(server: Server) -> bool:
    return bool(server.client.script_exists(SCRIPT_SHA)[0])


# --- the store through Sentinel -------------------------------------------------------


def test_the_store_works_through_the_sentinels(group: SentinelGroup, settings: Settings) -> None:
    with store_of(through(settings, group.addresses, group.master)) as store:
        job = store.create("t.demo", {"n": 1}, max_attempts=2)
        started = store.start(job.id, 1, "worker-1")
        assert started.started
        assert started.job.state is State.RUNNING
        store.end_attempt(job.id, State.COMPLETED, fence="worker-1", result={"n": 2})
        done = store.get(job.id)
        assert done.state is State.COMPLETED
        assert done.result == {"n": 2}
        primary = group.primary()
        assert state_on(primary, store, job.id) == "COMPLETED"
        assert store.redis.connection_pool.get_master_address() == ("127.0.0.1", primary.port)


def test_a_crashed_primary_is_replaced_without_a_restart(
    own_group: SentinelGroup, settings: Settings
) -> None:
    group = own_group
    with store_of(through(settings, group.addresses, group.master)) as store:
        job = store.create("t.demo", {"n": 1}, max_attempts=2)
        assert store.start(job.id, 1, "worker-1").started
        group.replicated()
        assert not any(has_script(replica) for replica in group.replicas())

        old = group.primary()
        old.kill()
        refused = 0
        while not group.promoted(old):
            started = time.monotonic()
            try:
                store.get(job.id)
            except StoreUnavailableError:
                refused += 1
            assert time.monotonic() - started < 5, "a call waited far past its timeouts"
            time.sleep(0.1)
        assert refused, "calls to a dead primary raise StoreUnavailableError"

        new = group.primary()
        # The same store, never restarted: the lease written before the crash reached
        # the new primary, so the running attempt's owner commits there.
        store.end_attempt(job.id, State.COMPLETED, fence="worker-1", result={"ok": True})
        assert has_script(new)
        assert state_on(new, store, job.id) == "COMPLETED"
        assert terminal_entries(store, job.id) == [State.COMPLETED]
        again = store.create("t.demo", {"n": 2}, max_attempts=1)
        assert state_on(new, store, again.id) == "CREATED"


def test_a_commit_after_a_failover_lands_on_the_new_primary(
    own_group: SentinelGroup, settings: Settings
) -> None:
    group = own_group
    with store_of(through(settings, group.addresses, group.master)) as store:
        job = store.create("t.demo", {"n": 1}, max_attempts=2)
        assert store.start(job.id, 1, "worker-1").started
        group.replicated()
        old = group.primary()
        assert store.redis.ping()  # leaves an idle connection to the old primary in the pool

        new = group.failover()
        assert old.replication()["role"] == "master"
        # The old primary, with no replica left, refuses writes (NOREPLICAS): the pool's
        # connection is closed on the refusal, and the next one goes to the new primary.
        key = f"{settings.prefix}:plain"
        with pytest.raises(redis.ConnectionError, match="NOREPLICAS"):
            store.redis.set(key, "v")
        assert store.redis.set(key, "v")
        assert new.client.get(key) == "v"
        # The store's own connection still goes to the old primary, is refused the same
        # way, and the commit goes once more, to the new primary, where the lease it
        # holds was replicated before the failover.
        store.end_attempt(job.id, State.COMPLETED, fence="worker-1")
        assert state_on(new, store, job.id) == "COMPLETED"
        assert state_on(old, store, job.id) == "RUNNING"
        assert has_script(new)
        assert terminal_entries(store, job.id) == [State.COMPLETED]
        with pytest.raises(StaleLeaseError):
            store.end_attempt(job.id, State.FAILED, fence="worker-1")
        assert terminal_entries(store, job.id) == [State.COMPLETED]


def test_a_lease_the_new_primary_never_saw_is_refused_there(
    tmp_path: Path, settings: Settings
) -> None:
    # Without min-replicas-to-write the old primary keeps taking writes after a failover
    # until the Sentinels demote it (about ten seconds): a lease granted there in that
    # window never reaches the new primary, and neither does anything under it.
    with (
        sentinel_group(tmp_path) as group,
        store_of(through(settings, group.addresses, group.master)) as store,
    ):
        job = store.create("t.demo", {"n": 1}, max_attempts=3)
        group.replicated()
        old = group.primary()
        new = group.failover()
        started = store.start(job.id, 1, "worker-1")
        assert started.started, "the old primary granted the lease"
        assert state_on(old, store, job.id) == "RUNNING"
        assert state_on(new, store, job.id) == "CREATED"

        wait_until(lambda: old.replication()["role"] == "slave", "the old primary's demotion")
        # Its next command reaches the demoted server, is refused (READONLY), and
        # goes to the new primary, which holds no lease of worker-1.
        with pytest.raises(StaleLeaseError):
            store.end_attempt(job.id, State.COMPLETED, fence="worker-1")
        assert store.get(job.id).state is State.CREATED
        assert terminal_entries(store, job.id) == []

        # The job's message comes back; the attempt that starts now is the one counted.
        assert store.start(job.id, 1, "worker-2").started
        store.end_attempt(job.id, State.COMPLETED, fence="worker-2")
        assert terminal_entries(store, job.id) == [State.COMPLETED]
        wait_until(lambda: state_on(old, store, job.id) == "COMPLETED", "replication")


def test_rediss_speaks_tls_to_the_sentinels_and_the_primary(
    tmp_path: Path, settings: Settings
) -> None:
    certificates = make_certificates(tmp_path)
    with sentinel_group(tmp_path, certificates=certificates) as group:
        secure = through(
            settings,
            group.addresses,
            group.master,
            redis_url="rediss://primary.invalid:1/0",
            tls_ca_file=str(certificates.ca_file),
        )
        with store_of(secure) as store:
            job = store.create("t.demo", {"n": 1}, max_attempts=1)  # the thread connections
            assert store.redis.ping()  # the client's own pool
            assert state_on(group.primary(), store, job.id) == "CREATED"
        # Without the authority the Sentinels' certificates are not trusted.
        untrusted = through(settings, group.addresses, group.master, redis_url=secure.redis_url)
        with store_of(untrusted) as store, pytest.raises(StoreUnavailableError) as refused:
            store.get(job.id)
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        assert "ORCHESTRATOR_TLS_CA_FILE" in str(refused.value)


# --- replicas confirming writes (WAIT) --------------------------------------------------


def test_a_waited_write_is_on_a_replica_when_it_returns(
    group: SentinelGroup, settings: Settings
) -> None:
    client = connect_redis(through(settings, group.addresses, group.master))
    try:
        connections = ThreadConnections(client, replicas=1, replica_timeout=2.0)
        for n in range(20):
            key = f"{settings.prefix}:waited:{n}"
            assert connections.execute("SET", key, "v") == "OK"
            # No wait here: WAIT replied only once a replica had the write.
            assert any(replica.client.get(key) == "v" for replica in group.replicas())
        assert connections.execute("GET", f"{settings.prefix}:waited:0") == "v"
    finally:
        close(client)


def test_a_write_too_few_replicas_confirm_is_unavailable(
    group: SentinelGroup, settings: Settings
) -> None:
    client = connect_redis(through(settings, group.addresses, group.master))
    try:
        connections = ThreadConnections(client, replicas=3, replica_timeout=0.05)
        key = f"{settings.prefix}:short"
        started = time.monotonic()
        with (
            pytest.raises(StoreUnavailableError, match="2 of the 3 replicas"),
            redis_errors("writing"),
        ):
            connections.execute("SET", key, "v")
        assert time.monotonic() - started < 2
        # It ran on the primary: the caller learns only that it may not last.
        assert group.primary().client.get(key) == "v"
        with pytest.raises(UnreplicatedError):
            connections.execute("GET", key)  # three replicas never confirm anything
    finally:
        close(client)


# --- misconfiguration ---------------------------------------------------------------------


def test_sentinels_that_do_not_answer_fail_fast_naming_them(
    settings: Settings, closed_port: int, hung_server: int
) -> None:
    addresses = (f"127.0.0.1:{closed_port}", f"127.0.0.1:{hung_server}")
    with store_of(through(settings, addresses, "jobs")) as store:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as raised:
                store.create("t.demo", {}, max_attempts=1)
            assert time.monotonic() - started < 2 * CONNECT_TIMEOUT + 1.5
            message = str(raised.value)
            assert "no Redis Sentinel" in message
            assert "answered" in message
            assert all(address in message for address in addresses)
            assert "'jobs'" in message


def test_an_unknown_master_name_fails_fast_naming_it(
    group: SentinelGroup, settings: Settings
) -> None:
    with store_of(through(settings, group.addresses, "no-such-primary")) as store:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as raised:
            store.get(str(uuid.uuid4()))
        assert time.monotonic() - started < 2
    message = str(raised.value)
    assert "monitors a primary named 'no-such-primary'" in message
    assert "ORCHESTRATOR_REDIS_SENTINEL_MASTER" in message
    assert group.addresses[0] in message


def test_a_unix_socket_url_with_sentinels_is_a_configuration_error(settings: Settings) -> None:
    configured = through(settings, ("127.0.0.1:26379",), "jobs", redis_url="unix:///tmp/r.sock")
    with pytest.raises(ConfigurationError, match="redis:// or rediss://"):
        connect_redis(configured)


def test_a_replica_named_without_sentinels_is_unavailable_not_a_crash(
    group: SentinelGroup, settings: Settings
) -> None:
    replica = group.replicas()[0]
    configured = load_settings(prefix=settings.prefix, redis_url=f"redis://{replica.address}/0")
    with store_of(configured) as store, pytest.raises(StoreUnavailableError, match="READONLY"):
        store.create("t.demo", {}, max_attempts=1)


def readyz(settings: Settings) -> httpx.Response:
    app = create_app(settings)
    state = app.state.api

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/readyz")

    try:
        return asyncio.run(get())
    finally:
        state.readiness.close()
        state.submitter.close()
        state.publisher.close()
        close(state.store.redis)


@pytest.mark.parametrize("fault", ["unknown master", "no sentinel"])
def test_readyz_says_what_the_sentinels_lack(
    group: SentinelGroup, settings: Settings, closed_port: int, fault: str
) -> None:
    if fault == "unknown master":
        configured = through(settings, group.addresses, "no-such-primary", plugins="demo")
        said = (
            "down: no Redis Sentinel monitors the primary that "
            "ORCHESTRATOR_REDIS_SENTINEL_MASTER names"
        )
    else:
        configured = through(settings, (f"127.0.0.1:{closed_port}",), "jobs", plugins="demo")
        said = "down: no Redis Sentinel answered (ORCHESTRATOR_REDIS_SENTINELS)"
    response = readyz(configured)
    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == said
    assert "redis" in body["detail"]
    assert str(closed_port) not in response.text
    assert all(address not in response.text for address in group.addresses)


def test_the_store_set_to_wait_returns_each_write_once_a_replica_has_it(
    group: SentinelGroup, settings: Settings
) -> None:
    waiting = through(settings, group.addresses, group.master, redis_wait_replicas=1)
    primary = group.primary().client

    def waits() -> int:
        return int(primary.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))

    before = waits()
    with store_of(waiting) as store:
        store.redis.script_flush()  # the first call loads the script, and is waited for too
        for _ in range(10):
            job = store.create("t.waited", {}, max_attempts=1)
            # Every replica may lag but one: the write is on at least one when it returns.
            assert any(
                state_on(replica, store, job.id) == "CREATED" for replica in group.replicas()
            )
            started = store.start(job.id, 1, "w")
            assert started.started
            assert any(state_on(r, store, job.id) == "RUNNING" for r in group.replicas())
    assert waits() - before >= 20  # a WAIT for every create and every start
