"""A private Redis primary, its replicas and three Sentinels watching them, on loopback
ports of their own, for the tests of failover: each server started and stopped by its PID,
with its files in the test's directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from processes import free_port, stop
from services import unavailable
from tls import Certificates

DOWN_AFTER_MS = 1000
"""How long a silent primary takes to be judged down: short, so a test's failover is quick."""

FAILOVER_TIMEOUT_MS = 4000

WAIT = 30.0
"""Seconds any one step of the group (a start, a promotion) is given before the test fails."""


def wait_until(check: Callable[[], bool], what: str, *, timeout: float = WAIT) -> None:
    """Poll ``check`` until it holds (a Redis error counts as not yet); fail naming
    ``what`` past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Server:
    """One redis-server process (a data node or a Sentinel) and a client for it."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    certificates: Certificates | None = None
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        tls: dict[str, Any] = {}
        if self.certificates is not None:
            tls = {"ssl": True, "ssl_ca_certs": str(self.certificates.ca_file)}
        self.client = redis.Redis(
            "127.0.0.1",
            self.port,
            socket_timeout=2,
            socket_connect_timeout=2,
            decode_responses=True,
            **tls,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def replication(self) -> dict[str, object]:
        return dict(self.client.info("replication"))

    def replicas_online(self) -> int:
        """How many replicas replicate from this server right now."""
        found = self.replication()
        return sum(
            1
            for key, value in found.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        )

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed or handed over."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.client.close()
        if self.alive:
            stop(self.process)


def tls_arguments(certificates: Certificates | None, port: int) -> list[str]:
    """A server's listening port: plain, or TLS only (replication over TLS too)."""
    if certificates is None:
        return ["--port", str(port)]
    return [
        *("--port", "0", "--tls-port", str(port), "--tls-replication", "yes"),
        *("--tls-cert-file", str(certificates.cert_file)),
        *("--tls-key-file", str(certificates.key_file)),
        *("--tls-ca-cert-file", str(certificates.ca_file), "--tls-auth-clients", "no"),
    ]


def start_server(
    directory: Path,
    name: str,
    *arguments: str,
    port: int = 0,
    certificates: Certificates | None = None,
) -> Server:
    """A redis-server on ``port`` (default: a free one) on loopback, given ``arguments``,
    speaking TLS only with ``certificates``, once it answers."""
    port = port or free_port()
    log = directory / f"{name}-{port}.log"
    command = ["redis-server", *arguments, "--bind", "127.0.0.1"]
    command += [*tls_arguments(certificates, port), "--dir", str(directory), "--logfile", str(log)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = Server(port, process, log, certificates)
    try:
        wait_until(lambda: not server.alive or bool(server.client.ping()), f"{name} to start")
        if not server.alive:
            raise AssertionError(f"{name} exited:\n{log.read_text(errors='replace')}")
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class SentinelGroup:
    """A primary, its replicas and three Sentinels monitoring them as ``master``."""

    master: str
    data: list[Server]
    sentinels: list[Server]

    @property
    def addresses(self) -> tuple[str, ...]:
        """The Sentinels, as ``ORCHESTRATOR_REDIS_SENTINELS`` takes them."""
        return tuple(sentinel.address for sentinel in self.sentinels)

    def named_ports(self) -> set[int]:
        """The primary's port as each Sentinel names it to clients (``SENTINEL MASTER``,
        which redis-py asks; ``GET-MASTER-ADDR-BY-NAME`` names the replica chosen for a
        promotion before the promotion is over)."""
        ports = set()
        for sentinel in self.sentinels:
            state = sentinel.client.sentinel_master(self.master)
            ports.add(-1 if state["flags"] != "master" else int(state["port"]))
        return ports

    def primary(self) -> Server:
        """The server every Sentinel names as the primary."""
        ports = self.named_ports()
        found = [server for server in self.data if {server.port} == ports]
        if not found:
            raise AssertionError(f"the Sentinels name no one primary: {ports}")
        return found[0]

    def replicas(self) -> list[Server]:
        primary = self.primary()
        return [server for server in self.data if server is not primary and server.alive]

    def promoted(self, old: Server) -> bool:
        """Every Sentinel names a primary other than ``old``, which says it is one and has
        every other live server but ``old`` replicating from it; ``old``, if it still
        runs, has no replica left (it is being demoted, or already is)."""
        ports = self.named_ports()
        if len(ports) != 1 or -1 in ports or old.port in ports:
            return False
        primary = self.primary()
        if primary.replication()["role"] != "master":
            return False
        followers = [s for s in self.data if s not in (primary, old) and s.alive]
        if primary.replicas_online() < len(followers):
            return False
        return not old.alive or old.replicas_online() == 0

    def settled(self) -> bool:
        """Every Sentinel names one primary, every other live server replicates from it,
        the Sentinels know each other, and no failover is under way."""
        ports = self.named_ports()
        if len(ports) != 1 or -1 in ports:
            return False
        primary = self.primary()
        others = [s for s in self.data if s is not primary and s.alive]
        if primary.replication()["role"] != "master" or primary.replicas_online() != len(others):
            return False
        for sentinel in self.sentinels:
            state = sentinel.client.sentinel_master(self.master)
            if int(state["num-other-sentinels"]) != len(self.sentinels) - 1:
                return False
            if int(state["num-slaves"]) < len(others) or state["flags"] != "master":
                return False
        return True

    def wait_settled(self) -> None:
        wait_until(self.settled, "the Sentinels to agree on one primary and its replicas")

    def failover(self) -> Server:
        """``SENTINEL FAILOVER``, then wait until a replica is the primary everywhere and
        the old primary has no replica left; return the new primary. The old one is
        still a primary to the clients connected to it, until the Sentinels demote it
        some seconds later."""
        old = self.primary()
        self.sentinels[0].client.execute_command("SENTINEL", "FAILOVER", self.master)
        wait_until(lambda: self.promoted(old), "a replica to be promoted")
        return self.primary()

    def crash(self) -> Server:
        """SIGKILL the primary and wait until the Sentinels promote a replica; return it."""
        old = self.primary()
        old.kill()
        wait_until(lambda: self.promoted(old), "the Sentinels to promote a replica")
        return self.primary()

    def replicated(self) -> None:
        """Wait until every replica has all that the primary wrote."""
        primary, count = self.primary(), len(self.replicas())
        # WAIT counts only this connection's own writes: one write here comes after every
        # write the primary took so far, and its confirm confirms them too.
        primary.client.set("replicated-marker", "1")
        wait_until(lambda: int(primary.client.wait(count, 1000)) >= count, "the replicas")

    def stop(self) -> None:
        for server in [*self.sentinels, *self.data]:
            server.stop()


@dataclass(frozen=True)
class SentinelSeat:
    """A Sentinel's port and id, chosen before any starts, so each one's file names the
    others and the replicas (they would take seconds to find each other themselves)."""

    port: int
    myid: str


def sentinel_config(
    directory: Path, master: str, seat: SentinelSeat, seats: list[SentinelSeat], data: list[Server]
) -> Path:
    """A Sentinel's file (it rewrites it as it learns), monitoring the first of ``data``."""
    primary, replicas = data[0], data[1:]
    lines = [
        f"sentinel myid {seat.myid}",
        f"sentinel monitor {master} 127.0.0.1 {primary.port} 2",
        f"sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {master} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {master} 2",
    ]
    lines += [f"sentinel known-replica {master} 127.0.0.1 {r.port}" for r in replicas]
    lines += [
        f"sentinel known-sentinel {master} 127.0.0.1 {other.port} {other.myid}"
        for other in seats
        if other != seat
    ]
    path = directory / f"sentinel-{seat.port}.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def sentinel_group(
    directory: Path,
    *,
    master: str = "jobs",
    min_replicas: int = 0,
    certificates: Certificates | None = None,
) -> Iterator[SentinelGroup]:
    """Start a primary, two replicas and three Sentinels watching them as ``master``;
    yield them once the Sentinels agree; stop every one by its PID.

    :param min_replicas: every data server's ``min-replicas-to-write``: a primary with
        fewer replicas than this refuses writes (NOREPLICAS).
    :param certificates: every server, Sentinels too, speaks TLS only, with these.
    """
    if shutil.which("redis-server") is None:
        unavailable("redis-server", "PATH", FileNotFoundError("redis-server is not installed"))
    plain = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
    if min_replicas:
        plain += ["--min-replicas-to-write", str(min_replicas), "--min-replicas-max-lag", "5"]
    group = SentinelGroup(master, [], [])
    try:
        primary = start_server(directory, "primary", *plain, certificates=certificates)
        group.data.append(primary)
        for index in range(2):
            follow = ("--replicaof", "127.0.0.1", str(primary.port))
            group.data.append(
                start_server(
                    directory, f"replica{index}", *plain, *follow, certificates=certificates
                )
            )
        wait_until(lambda: primary.replicas_online() == 2, "the replicas to synchronise")
        seats = [SentinelSeat(free_port(), uuid.uuid4().hex + "0" * 8) for _ in range(3)]
        for seat in seats:
            config = str(sentinel_config(directory, master, seat, seats, group.data))
            sentinel = start_server(
                directory,
                "sentinel",
                config,
                "--sentinel",
                port=seat.port,
                certificates=certificates,
            )
            group.sentinels.append(sentinel)
        group.wait_settled()
        yield group
    finally:
        group.stop()
