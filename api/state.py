"""What the API process holds for its whole life: settings, plugins, store, publisher,
the metrics it exports, and its copy of the job types' overrides."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from api.fanout import FanOut
from api.keys import KeyRing
from api.metrics import ApiMetrics
from api.readiness import ReadinessProbe
from api.schemas import SubmissionModels
from orchestrator_core import Plugins, Settings
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.sealing import Sealer
from orchestrator_core.store import JobStore
from orchestrator_core.telemetry.events import EventLog

OVERRIDES_MAX_AGE = 1.0
"""Seconds a copy of the overrides serves ``POST /jobs`` before it is read again."""


@dataclass
class OverrideCache:
    """The operators' overrides of the job types' limits (``PATCH /job-types/{name}``),
    as ``POST /jobs`` needs them: a job without a priority of its own takes its type's
    effective one.

    Read from Redis (``JobStore.overrides``) at most once every ``max_age`` seconds, by
    one request at a time while the others wait for it, and never per submission: a
    round trip on every POST would cost more than the rest of its Redis work. So an
    override PATCHed through another API process applies here within ``max_age``, and
    one PATCHed through this process at once (:meth:`put`). Limits and pauses are not
    read here at all: the store applies them when a job starts.
    """

    store: JobStore
    max_age: float = OVERRIDES_MAX_AGE
    _overrides: dict[str, Mapping[str, Any]] = field(default_factory=dict, init=False)
    _read_at: float = field(default=-math.inf, init=False)
    _puts: int = field(default=0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def get(self, job_type: str) -> Mapping[str, Any]:
        """The stored override of ``job_type`` (``{}`` for none), at most ``max_age`` old.

        :raises StoreUnavailableError: the copy is out of date and Redis does not answer.
        """
        if time.monotonic() - self._read_at > self.max_age:
            async with self._lock:
                if time.monotonic() - self._read_at > self.max_age:
                    await self._read()
        return self._overrides.get(job_type, {})

    def put(self, job_type: str, override: Mapping[str, Any]) -> None:
        """What this process's own PATCH stored for ``job_type``, in use from now on."""
        self._overrides = {**self._overrides, job_type: dict(override)}
        self._puts += 1

    async def _read(self) -> None:
        started, puts = time.monotonic(), self._puts
        overrides = await anyio.to_thread.run_sync(self.store.overrides)
        if self._puts == puts:
            self._overrides, self._read_at = dict(overrides), started
        # else a PATCH of this process landed while Redis was read, perhaps after the
        # read: keep what it put, and read again on the next submission.


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    plugins: Plugins
    store: JobStore
    publisher: Publisher
    metrics: ApiMetrics
    fanout: FanOut
    """Hands the event stream to every open ``/events`` stream of this process."""
    submissions: SubmissionModels
    """The ``POST /jobs`` request model of each installed type."""
    submitter: Submitter
    """Stores and publishes this process's submissions, many requests at a time."""
    keys: KeyRing
    """The API keys and the role each grants."""
    readiness: ReadinessProbe
    """Answers ``/readyz`` from a probe at most ``readiness_cache_seconds`` old."""
    overrides: OverrideCache
    """The job types' overrides, as submissions need them (at most a second old)."""

    @classmethod
    def build(cls, settings: Settings, plugins: Plugins) -> ApiState:
        store = JobStore.from_settings(settings, plugins=plugins)
        publisher = Publisher.from_settings(settings)
        return cls(
            settings=settings,
            plugins=plugins,
            store=store,
            publisher=publisher,
            metrics=ApiMetrics.build(store, plugins),
            fanout=FanOut.for_socket_timeout(
                EventLog(store.redis, store.keys),
                settings.redis_socket_timeout,
                max_streams=settings.max_streams,
                max_streams_per_owner=settings.max_streams_per_key,
            ),
            submissions=SubmissionModels(plugins),
            submitter=Submitter(store, publisher, sealer=Sealer.from_settings(settings)),
            keys=KeyRing.from_settings(settings),
            readiness=ReadinessProbe.from_settings(settings, store),
            overrides=OverrideCache(store),
        )
