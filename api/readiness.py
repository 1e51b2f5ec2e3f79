"""The answer of ``/readyz``: Redis and the broker probed at most once per interval.

Readiness is polled by load balancers and orchestrators, often by several at once and
from every replica. Probing on every call would open an AMQP connection each time and
queue the probes on the thread pool that ``POST /jobs`` needs. So one probe runs at a
time, on two threads of its own (Redis and the broker side by side, so a hung one does
not delay the other's answer), every caller meanwhile awaits that same probe, and its
result stands for ``readiness_cache_seconds`` from when it started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from orchestrator_core import Settings
from orchestrator_core.dispatch.broker import broker_connection, broker_name, broker_urls
from orchestrator_core.exceptions import StoreUnavailableError
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import PrimaryUnknownError

logger = logging.getLogger(__name__)

OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    """What one probe found: ``"ok"`` or ``"down: <error>"`` per service, and warnings
    that do not make the API unready (an evicting Redis)."""

    redis: str
    broker: str
    warnings: tuple[str, ...] = ()

    @property
    def down(self) -> list[str]:
        return [
            name for name, found in (("redis", self.redis), ("broker", self.broker)) if found != OK
        ]


class RedisProbe:
    """Redis answers; and whether it may evict keys (``JobStore.eviction_warning``)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def __call__(self) -> tuple[str, str | None]:
        try:
            self.store.redis.ping()
            return OK, self.store.eviction_warning()
        except (redis.RedisError, StoreUnavailableError) as exc:
            return redis_down(exc), None


def redis_down(exc: Exception) -> str:
    """What ``/readyz`` says of Redis's error ``exc``: its class only (the endpoint is open,
    and an address or a password must not reach it), or, when the Sentinels name no
    primary, why, in words that name no address."""
    cause = exc if isinstance(exc, PrimaryUnknownError) else exc.__cause__
    if isinstance(cause, PrimaryUnknownError):
        return f"down: {cause.summary}"
    return f"down: {type(exc).__name__}"


class BrokerProbe:
    """A broker accepts a connection and an AMQP handshake within the publish timeout;
    with several brokers, any one of them (connections fail over to it): all are probed
    side by side, and when none answers the status says why, broker by broker
    (``host:port`` in the log, their place in ``ORCHESTRATOR_BROKER_URL`` in the status).

    A fresh connection each time (made with the deployment's TLS options): a kept one
    could hang on a wedged broker past any timeout. The cache above makes it one per
    interval, on the probe's own thread.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.publish_timeout_seconds
        self.urls = broker_urls(settings)
        self._down: frozenset[str] = frozenset()

    def __call__(self) -> str:
        if len(self.urls) == 1:
            why = self._probe(self.urls[0])
            return f"down: {why}" if why else OK
        with ThreadPoolExecutor(len(self.urls), thread_name_prefix="readiness-broker") as each:
            found = list(each.map(self._probe, self.urls))
        down = frozenset(broker_name(url) for url, why in zip(self.urls, found, strict=True) if why)
        if down != self._down:
            if down:
                logger.warning("brokers not answering: %s", ", ".join(sorted(down)))
            else:
                logger.info("every broker answers again")
            self._down = down
        if len(down) < len(self.urls):
            return OK
        reasons = ", ".join(f"broker {place} {why}" for place, why in enumerate(found, 1))
        return f"down: none of {len(self.urls)} brokers answers ({reasons})"

    def _probe(self, url: str) -> str:
        """An empty string when the broker at ``url`` answers, else why not."""
        try:
            connection = broker_connection(
                self.settings, url=url, connect_timeout=self.timeout, heartbeat=0
            )
            with connection as conn:
                conn.ensure_connection(max_retries=1, timeout=self.timeout)
        except Exception as exc:  # any failure to connect means not ready, whatever kombu raised
            return type(exc).__name__
        return ""


class ReadinessProbe:
    """Probes Redis and the broker for ``/readyz``, at most once per ``interval`` seconds,
    one probe at a time however many callers wait for it.

    :param redis_probe: returns Redis's status and its eviction warning, if any.
    :param broker_probe: returns the broker's status.
    """

    def __init__(
        self,
        redis_probe: Callable[[], tuple[str, str | None]],
        broker_probe: Callable[[], str],
        *,
        interval: float,
    ) -> None:
        self.redis_probe = redis_probe
        self.broker_probe = broker_probe
        self.interval = interval
        self._last: Readiness | None = None
        self._started = 0.0
        self._running: asyncio.Future[Readiness] | None = None
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readiness")

    @classmethod
    def from_settings(cls, settings: Settings, store: JobStore) -> ReadinessProbe:
        return cls(
            RedisProbe(store), BrokerProbe(settings), interval=settings.readiness_cache_seconds
        )

    async def check(self) -> Readiness:
        """The latest probe's result, probing first when it is older than the interval."""
        last = self._last
        if last is not None and time.monotonic() - self._started < self.interval:
            return last
        running = self._running
        if running is None:
            self._started = time.monotonic()
            running = self._running = asyncio.ensure_future(self._probe())
        # Shielded: a caller that goes away must not cancel the probe the others await.
        return await asyncio.shield(running)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _probe(self) -> Readiness:
        loop = asyncio.get_running_loop()
        try:
            (redis_status, warning), broker_status = await asyncio.gather(
                loop.run_in_executor(self._threads, self.redis_probe),
                loop.run_in_executor(self._threads, self.broker_probe),
            )
            found = Readiness(redis_status, broker_status, (warning,) if warning else ())
            self._last = found
            return found
        finally:
            self._running = None
