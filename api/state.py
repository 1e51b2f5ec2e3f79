"""What the API process holds for its whole life: settings, plugins, store, publisher
and the metrics it exports."""

from __future__ import annotations

from dataclasses import dataclass

from api.fanout import FanOut
from api.metrics import ApiMetrics
from api.schemas import SubmissionModels
from orchestrator_core import Plugins, Settings
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
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
                EventLog(store.redis, store.keys), settings.redis_socket_timeout
            ),
            submissions=SubmissionModels(plugins),
            submitter=Submitter(store, publisher),
        )
