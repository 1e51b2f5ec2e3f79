"""Redis connections with explicit timeouts, so a dead or hung Redis fails fast and clearly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator_core.exceptions import StoreUnavailableError
from orchestrator_core.settings import Settings


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for ``settings.redis_url`` that gives up within the configured timeouts.

    Commands are never retried by the client: a script whose reply was lost may have
    run, and only the caller knows whether repeating it is safe. Idle pooled
    connections are checked before use, so a Redis restart costs no failed command.
    """
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        client_name=f"{settings.prefix}-orchestrator",
    )


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Turn the client's connection and timeout errors into :class:`StoreUnavailableError`."""
    try:
        yield
    except redis.TimeoutError as exc:
        raise StoreUnavailableError(f"Redis did not answer in time while {action}") from exc
    except redis.ConnectionError as exc:
        raise StoreUnavailableError(f"Redis is unreachable while {action}: {exc}") from exc
