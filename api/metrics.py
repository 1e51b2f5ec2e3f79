"""What ``GET /metrics`` exports: the registry of one API app and its rendering.

Two kinds of figures meet here. The deployment's (jobs, workers) are read from Redis
at each scrape by :class:`~api.collector.StoreCollector`, so they are the same
whichever API process answers. This process's own (request latency, its plugin load
failures) live in memory, and with several server processes behind one port each
would answer with its share only. For that case prometheus_client's multiprocess
mode is supported: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, writable
by every server process, before they start (and empty it again before a restart);
each process then writes its request histogram to files there and every scrape adds
up all of them. Either way the Redis collector is registered once, in the registry
that answers the scrape, so no job is counted twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from api.collector import PluginCollector, StoreCollector
from orchestrator_core import ConfigurationError, Plugins
from orchestrator_core.store import JobStore

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds of the request latency histogram, in seconds."""


@dataclass(frozen=True)
class ApiMetrics:
    """The registry one app exports, and the request histogram its middleware feeds."""

    registry: CollectorRegistry
    requests: Histogram
    multiprocess: bool

    @classmethod
    def build(cls, store: JobStore, plugins: Plugins) -> ApiMetrics:
        """A registry of its own per app (never the global one), so two apps in one
        process, as in the tests, do not share figures or clash on names.

        :raises ConfigurationError: ``PROMETHEUS_MULTIPROC_DIR`` is set but is not a
            directory.
        """
        directory = os.environ.get(MULTIPROCESS_VARIABLE)
        registry = CollectorRegistry()
        if directory:
            if not os.path.isdir(directory):
                raise ConfigurationError(
                    f"{MULTIPROCESS_VARIABLE}={directory} is not a directory; create it "
                    "(empty) before starting the API"
                )
            # The files hold every process's request figures, this one's included:
            # registering the histogram here as well would count this process twice.
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        requests = Histogram(
            "orchestrator_http_request_duration_seconds",
            "Time to the start of the response, by method, route template and status.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=None if directory else registry,
        )
        registry.register(PluginCollector(plugins.report))
        registry.register(StoreCollector(store))
        return cls(registry=registry, requests=requests, multiprocess=bool(directory))

    def render(self) -> bytes:
        """The text exposition of every figure; reads Redis, so call it off the event loop."""
        return generate_latest(self.registry)
