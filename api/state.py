"""What the API process holds for its whole life: settings, plugins, store and publisher."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator_core import Plugins, Settings
from orchestrator_core.broker import Publisher
from orchestrator_core.store import JobStore


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    plugins: Plugins
    store: JobStore
    publisher: Publisher

    @classmethod
    def build(cls, settings: Settings, plugins: Plugins) -> ApiState:
        return cls(
            settings=settings,
            plugins=plugins,
            store=JobStore.from_settings(settings, observer=plugins.notify_transitioned),
            publisher=Publisher.from_settings(settings),
        )
