"""What the API process holds for its whole life: settings, plugins, store, publisher
and the metrics it exports."""

from __future__ import annotations

from dataclasses import dataclass

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
        )
