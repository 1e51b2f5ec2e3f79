"""Redis connections with explicit timeouts, so a dead or hung Redis fails fast and clearly."""

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
from redis.retry import Retry

from orchestrator_core.exceptions import ConfigurationError, StoreUnavailableError
from orchestrator_core.settings import Settings

TLS_HINT = "ORCHESTRATOR_TLS_CA_FILE names the authorities trusted (unset: the system's)"
"""Said with every TLS failure: an untrusted certificate is nearly always a missing CA."""


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

    :raises ConfigurationError: ``tls_ca_file`` is set and cannot be loaded.
    """
    ca_file = trusted_ca_file(settings)
    tls: dict[str, Any] = {}
    if settings.redis_url.lower().startswith("rediss://"):
        tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": ca_file}
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        client_name=f"{settings.prefix}-orchestrator",
        **tls,
    )


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Turn the client's connection and timeout errors into :class:`StoreUnavailableError`."""
    try:
        yield
    except redis.TimeoutError as exc:
        raise StoreUnavailableError(f"Redis did not answer in time while {action}") from exc
    except redis.ConnectionError as exc:
        if isinstance(exc.__cause__, ssl.SSLError):
            raise StoreUnavailableError(
                f"TLS with Redis failed while {action}: {exc.__cause__}; {TLS_HINT}"
            ) from exc
        raise StoreUnavailableError(f"Redis is unreachable while {action}: {exc}") from exc


class ThreadConnections:
    """One connection of ``client``'s pool held by each thread, for the store's hot path.

    A command sent through the client takes a connection from the pool and gives it
    back, through layers of retry and instrumentation: on this path that costs more
    CPU than Redis spends on the command. Each thread here keeps its own connection
    (taken again after a fork, or after any error, which closes it), with the client's
    timeouts, authentication and health checks, so nothing is lost but the detours.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def execute(self, *args: str | int | float | bytes) -> Any:
        """Send one command on this thread's connection and return its reply.

        :raises redis.RedisError: as the client would (the caller maps it).
        """
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
        try:
            # The stub types its argument as a one-element tuple; it takes any number.
            connection.send_packed_command([hiredis.pack_command(args)])  # type: ignore[arg-type]
            return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            # The reply may still arrive on this socket: it must never be read as the
            # reply of a later command.
            connection.disconnect()
            self._pool.release(connection)
            local.connection = None
            raise
