"""What each worker process builds once for itself: Redis clients, listener, runner and
a publisher.

Built lazily on the first message in each process, since a prefork pool forks its
processes and connections must not cross a fork.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from orchestrator_core import Plugins, Settings
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.sealing import Sealer
from orchestrator_core.store import JobStore
from worker.listener import ChannelListener
from worker.runner import Runner


@dataclass(frozen=True)
class Runtime:
    pid: int
    store: JobStore
    runner: Runner
    listener: ChannelListener
    publisher: Publisher
    """Queues a fresh copy of a message this process cannot start (Redis away)."""


_current: Runtime | None = None


def runtime(settings: Settings, plugins: Plugins) -> Runtime:
    """This process's runtime, built on first use (and again after a fork)."""
    global _current
    if _current is None or _current.pid != os.getpid():
        _current = _build(settings, plugins)
    return _current


def _build(settings: Settings, plugins: Plugins) -> Runtime:
    store = JobStore.from_settings(settings, plugins=plugins)
    publisher = Publisher.from_settings(settings)
    runner = Runner(
        store,
        plugins,
        worker_name=f"{socket.gethostname()}:{os.getpid()}",
        lease_seconds=settings.lease_seconds,
        grace_seconds=settings.cancel_grace_seconds,
        sealer=Sealer.from_settings(settings),
        publisher=publisher,
    )
    listener = ChannelListener(
        store.redis, store.keys.cancel_channel, on_message=runner.supervisor.cancel
    )
    listener.start()
    return Runtime(os.getpid(), store, runner, listener, publisher)
