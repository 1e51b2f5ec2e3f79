"""Redis connections with explicit timeouts, so a dead or hung Redis fails fast and clearly.

With ``redis_sentinels`` set, the primary is whichever server the Sentinels name, asked
again whenever a connection to it is made; a server that refuses a write as no primary
would (a demoted primary, or one cut off from its replicas) closes the connection, so
the next one finds the primary the Sentinels name by then.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, parse_url
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from orchestrator_core.exceptions import ConfigurationError, StoreUnavailableError
from orchestrator_core.settings import Settings

TLS_HINT = "ORCHESTRATOR_TLS_CA_FILE names the authorities trusted (unset: the system's)"
"""Said with every TLS failure: an untrusted certificate is nearly always a missing CA."""

NOT_PRIMARY_CODES = frozenset({"READONLY", "NOREPLICAS", "MASTERDOWN", "UNBLOCKED"})
"""Error replies that only a server that is not (or no longer) a usable primary gives:
a replica (``READONLY``, ``MASTERDOWN``), a primary with fewer good replicas than its
``min-replicas-to-write`` (``NOREPLICAS``), a primary being demoted (``UNBLOCKED``).
Each refuses the command before it has any effect."""


class NotPrimaryError(redis.ConnectionError):
    """Raised when the server a connection reached refused a command as no primary would
    (see :data:`NOT_PRIMARY_CODES`). The command had no effect and the connection is
    closed, so the next one asks the Sentinels again: a connection error to redis-py's
    machinery, a :class:`StoreUnavailableError` to the store's callers."""


class PrimaryUnknownError(MasterNotFoundError):
    """Raised when no Sentinel names a healthy primary: none answered, none monitors the
    master name, or the primary they know is down (a failover under way).

    :ivar summary: the cause in words that name no address, for ``/readyz``.
    """

    def __init__(self, message: str, *, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


def not_primary(exc: BaseException) -> bool:
    """Whether ``exc`` is a refusal of :data:`NOT_PRIMARY_CODES` (or already says so)."""
    if isinstance(exc, NotPrimaryError):
        return True
    return isinstance(exc, redis.ResponseError) and exc.status_code in NOT_PRIMARY_CODES


def reply_text(exc: redis.ResponseError) -> str:
    """The error reply as Redis sent it: redis-py strips the code of those it has a class for."""
    text = str(exc)
    code = exc.status_code
    return text if not code or text.startswith(code) else f"{code} {text}"


def trusted_ca_file(settings: Settings) -> str | None:
    """``settings.tls_ca_file`` once it is known to hold PEM certificates; None if unset.

    Read here, at start, so a wrong path is a ConfigurationError naming the setting
    rather than a TLS traceback at the first connection, which may come much later.

    :raises ConfigurationError: the file is missing, unreadable or holds no certificate.
    """
    path = settings.tls_ca_file
    if not path:  # an empty variable, as compose passes an unset one, means unset
        return None
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; a NUL byte, ValueError
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise ConfigurationError(
            f"ORCHESTRATOR_TLS_CA_FILE: cannot load certificate authorities from {path!r}: "
            f"{reason}; it must name a PEM file of CA certificates"
        ) from None
    return path


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for ``settings.redis_url`` that gives up within the configured timeouts.

    Commands are never retried by the client: a script whose reply was lost may have
    run, and only the caller knows whether repeating it is safe. Idle pooled
    connections are checked before use, so a Redis restart costs no failed command.
    A ``rediss://`` URL verifies the server's certificate and host name against
    ``tls_ca_file`` (else the system's authorities); every connection of the pool,
    ThreadConnections' too, is made with these options.

    With ``redis_sentinels`` set, each connection goes to the primary the Sentinels name
    for ``redis_sentinel_master`` (see :class:`Sentinels`); the URL's host and port are
    not used, its database, user, password and scheme are (``rediss://`` speaks TLS to
    the Sentinels too, verified the same way). Nothing is sent before the first command,
    so a process starts while Redis or its Sentinels are away.

    :raises ConfigurationError: ``tls_ca_file`` is set and cannot be loaded, or the URL
        is a ``unix://`` one while Sentinels are set.
    """
    ca_file = trusted_ca_file(settings)
    tls: dict[str, Any] = {}
    if settings.redis_url.lower().startswith("rediss://"):
        tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": ca_file}
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
        "client_name": f"{settings.prefix}-orchestrator",
        **tls,
    }
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    return Sentinels.from_settings(settings, tls).primary(settings.redis_url, options)


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary the Sentinels name, closed on any reply of
    :data:`NOT_PRIMARY_CODES`, which is raised as :class:`NotPrimaryError`.

    redis-py's own class does so for ``READONLY`` and ``UNBLOCKED`` only; a connection to
    a primary that lost its replicas (``NOREPLICAS``: after a failover, the old primary
    until the Sentinels demote it, some seconds later) would be kept, and every write
    on it refused until then.
    """

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            # Past SentinelManagedConnection's version, which raises a plain
            # ConnectionError for two of these codes and lets the others through.
            return AbstractConnection.read_response(self, *args, **kwargs)
        except redis.ResponseError as exc:
            if exc.status_code not in NOT_PRIMARY_CODES:
                raise
            self.disconnect()  # type: ignore[no-untyped-call]
            raise NotPrimaryError(
                f"{self.host}:{self.port} is no usable primary any more ({reply_text(exc)}); "
                "the Sentinels are asked again on the next connection"
            ) from exc


class PrimarySSLConnection(PrimaryConnection, SentinelManagedSSLConnection):
    """:class:`PrimaryConnection` over TLS."""


class Sentinels(Sentinel):
    """The Sentinels of ``redis_sentinels``, which name the primary of ``master``.

    Each Sentinel is given the connect timeout to answer (the question is part of making
    a connection), so with every Sentinel down a command fails within the connect
    timeout times their number. A failure names the Sentinels and the master name.
    """

    def __init__(
        self, addresses: tuple[str, ...], *, master: str, sentinel_kwargs: dict[str, Any]
    ) -> None:
        pairs = [(host, int(port)) for host, _, port in (a.rpartition(":") for a in addresses)]
        super().__init__(pairs, sentinel_kwargs=sentinel_kwargs)
        self.addresses = list(addresses)
        self.master = master

    @classmethod
    def from_settings(cls, settings: Settings, tls: dict[str, Any]) -> Sentinels:
        """The Sentinels of ``settings``, reached with the ``tls`` options when it has any."""
        master = settings.redis_sentinel_master
        if master is None:  # the settings refuse this; the types cannot tell
            raise ConfigurationError("ORCHESTRATOR_REDIS_SENTINEL_MASTER is not set")
        password = settings.redis_sentinel_password
        timeout = min(settings.redis_socket_timeout, settings.redis_connect_timeout)
        kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": settings.redis_connect_timeout,
            "socket_keepalive": True,
            "password": password.get_secret_value() if password is not None else None,
            "client_name": f"{settings.prefix}-orchestrator",
        }
        if tls:
            kwargs.update(tls, ssl=True)
        return cls(settings.redis_sentinels, master=master, sentinel_kwargs=kwargs)

    def primary(self, url: str, options: dict[str, Any]) -> redis.Redis:
        """A client of the primary, with ``options`` and the database, credentials and
        TLS of ``url`` (whose host and port the Sentinels stand in for).

        :raises ConfigurationError: ``url`` is a ``unix://`` one.
        """
        try:
            given = parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(f"ORCHESTRATOR_REDIS_URL: {exc}") from None
        scheme = given.pop("connection_class", None)
        if given.pop("path", None) is not None or scheme is redis.UnixDomainSocketConnection:
            raise ConfigurationError(
                "ORCHESTRATOR_REDIS_URL must be a redis:// or rediss:// URL when "
                "ORCHESTRATOR_REDIS_SENTINELS is set: the Sentinels name a host and a port"
            )
        given.pop("host", None)
        given.pop("port", None)
        encrypted = scheme is redis.SSLConnection
        kind = PrimarySSLConnection if encrypted else PrimaryConnection
        client: redis.Redis = self.master_for(
            self.master, connection_class=kind, **{**options, **given}
        )
        return client

    def discover_master(self, service_name: str) -> tuple[str, int]:
        """The primary's address, from the first Sentinel that names a healthy one.

        :raises PrimaryUnknownError: none does; the message says why, Sentinel by Sentinel.
        """
        failures: list[str] = []
        unaware: list[str] = []
        for index, (address, sentinel) in enumerate(
            zip(self.addresses, self.sentinels, strict=True)
        ):
            try:
                masters: dict[str, dict[str, Any]] = sentinel.sentinel_masters()  # type: ignore[assignment]
            except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError) as exc:
                hint = f"; {TLS_HINT}" if isinstance(exc.__cause__, ssl.SSLError) else ""
                failures.append(f"{address}: {exc}{hint}")
                continue
            state = masters.get(service_name)
            if state is None:
                unaware.append(address)
            elif state["is_master"] and not state["is_sdown"] and not state["is_odown"]:
                if index:  # the one that answered is asked first from now on
                    first = self.sentinels
                    first[0], first[index] = first[index], first[0]
                    named = self.addresses
                    named[0], named[index] = named[index], named[0]
                return str(state["ip"]), int(state["port"])
        raise self._unknown(service_name, failures, unaware)

    def _unknown(self, name: str, failures: list[str], unaware: list[str]) -> PrimaryUnknownError:
        listed = ", ".join(self.addresses)
        failed = f" ({'; '.join(failures)})" if failures else ""
        if len(failures) == len(self.addresses):
            return PrimaryUnknownError(
                f"no Redis Sentinel of ORCHESTRATOR_REDIS_SENTINELS ({listed}) answered when "
                f"asked for the primary {name!r}{failed}",
                summary="no Redis Sentinel answered (ORCHESTRATOR_REDIS_SENTINELS)",
            )
        if len(unaware) + len(failures) == len(self.addresses):
            return PrimaryUnknownError(
                f"no Redis Sentinel of {listed} monitors a primary named {name!r} "
                f"(ORCHESTRATOR_REDIS_SENTINEL_MASTER){failed}",
                summary=(
                    "no Redis Sentinel monitors the primary that "
                    "ORCHESTRATOR_REDIS_SENTINEL_MASTER names"
                ),
            )
        return PrimaryUnknownError(
            f"the Redis Sentinels {listed} know of no healthy primary {name!r} at the moment "
            f"(a failover may be under way){failed}",
            summary="the Redis Sentinels know of no healthy primary (a failover may be under way)",
        )


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Turn the client's connection and timeout errors, and a refusal by a server that is
    not the primary, into :class:`StoreUnavailableError`."""
    try:
        yield
    except UnreplicatedError as exc:
        raise StoreUnavailableError(f"Redis replicated too slowly while {action}: {exc}") from exc
    except redis.TimeoutError as exc:
        raise StoreUnavailableError(f"Redis did not answer in time while {action}") from exc
    except PrimaryUnknownError as exc:
        raise StoreUnavailableError(f"no Redis primary is known while {action}: {exc}") from exc
    except redis.ConnectionError as exc:
        if isinstance(exc.__cause__, ssl.SSLError):
            raise StoreUnavailableError(
                f"TLS with Redis failed while {action}: {exc.__cause__}; {TLS_HINT}"
            ) from exc
        if isinstance(exc, NotPrimaryError):
            raise StoreUnavailableError(f"Redis refused while {action}: {exc}") from exc
        raise StoreUnavailableError(f"Redis is unreachable while {action}: {exc}") from exc
    except redis.ResponseError as exc:
        if not not_primary(exc):
            raise
        # Without Sentinels: the URL names a replica, or a primary short of replicas.
        raise StoreUnavailableError(
            f"Redis refused while {action}, as a replica or a primary cut off from its "
            f"replicas does: {reply_text(exc)}"
        ) from exc


class UnreplicatedError(redis.TimeoutError):
    """Raised when a command ran on the primary but fewer replicas than asked for confirmed
    it within the timeout (``WAIT``): it may be lost if the primary fails now. A
    :class:`StoreUnavailableError` to the store's callers, like a reply that never came."""


class ThreadConnections:
    """One connection of ``client``'s pool held by each thread, for the store's hot path.

    A command sent through the client takes a connection from the pool and gives it
    back, through layers of retry and instrumentation: on this path that costs more
    CPU than Redis spends on the command. Each thread here keeps its own connection
    (taken again after a fork, or after any error, which closes it), with the client's
    timeouts, authentication and health checks, so nothing is lost but the detours.

    A command refused as no primary would (:func:`not_primary`) had no effect, so it is
    sent once more on a new connection: after a failover that one goes to the new
    primary, and the caller never hears of the old one.

    :param replicas: with more than 0, each command is followed on the same trip by
        ``WAIT replicas``: a reply comes back once that many replicas have every write
        of this connection, or raises :class:`UnreplicatedError` past
        ``replica_timeout`` seconds (and the connection is closed, so the next one asks
        the Sentinels where the primary is). A command that wrote nothing waits for
        nothing new.
    """

    def __init__(
        self, client: redis.Redis, *, replicas: int = 0, replica_timeout: float = 0.1
    ) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()
        self._replicas = replicas
        wait = ("WAIT", replicas, max(1, round(replica_timeout * 1000)))
        self._wait = hiredis.pack_command(wait)  # type: ignore[arg-type]

    def execute(self, *args: str | int | float | bytes) -> Any:
        """Send one command on this thread's connection and return its reply.

        :raises redis.RedisError: as the client would (the caller maps it).
        :raises UnreplicatedError: it ran, but too few replicas confirmed it in time.
        """
        try:
            return self._send(args)
        except (NotPrimaryError, redis.ResponseError) as exc:
            if not not_primary(exc):
                raise
        return self._send(args)

    def _send(self, args: tuple[str | int | float | bytes, ...]) -> Any:
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is None or local.pid != os.getpid():
            connection = self._pool.get_connection()
            local.connection, local.pid = connection, os.getpid()
        else:
            # As the pool checks a connection it hands out: one the server closed (a
            # restart) reads as readable, and is opened again before any command goes.
            try:
                if connection.can_read():
                    raise redis.ConnectionError("the connection has data nobody asked for")
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                connection.disconnect()
                connection.connect()
        # The stub types pack_command's argument as a one-element tuple; it takes any number.
        packed = [hiredis.pack_command(args)]  # type: ignore[arg-type]
        if self._replicas:
            packed.append(self._wait)
        refused: redis.ResponseError | None = None
        try:
            connection.send_packed_command(packed)
            try:
                reply = connection.read_response()
            except redis.ResponseError as exc:
                if not_primary(exc):
                    # Without Sentinels: a new connection may reach another server (a
                    # name that moved to the new primary), this one never will.
                    self._drop(connection)
                    raise
                refused = exc  # WAIT's reply is still to be read
            if self._replicas:
                self._confirmed(connection)
        except (redis.ConnectionError, redis.TimeoutError):
            # The reply may still arrive on this socket: it must never be read as the
            # reply of a later command.
            self._drop(connection)
            raise
        if refused is not None:
            raise refused
        return reply

    def _confirmed(self, connection: Any) -> None:
        """Read ``WAIT``'s reply: enough replicas, or a connection error of some kind."""
        try:
            acknowledged = int(connection.read_response())
        except redis.ResponseError as exc:
            # Only a replica refuses WAIT, and on a replica the command wrote nothing.
            raise NotPrimaryError(f"{exc}; the Sentinels are asked again") from exc
        if acknowledged < self._replicas:
            raise UnreplicatedError(
                f"{acknowledged} of the {self._replicas} replicas asked for confirmed the "
                "write in time; it is lost if the primary fails before they have it"
            )

    def _drop(self, connection: Any) -> None:
        connection.disconnect()
        self._pool.release(connection)
        self._local.connection = None
