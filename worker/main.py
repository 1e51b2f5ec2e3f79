"""``orchestrator worker``: consume the queues of the installed job types and run their jobs."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence

from celery import signals

from orchestrator_core import Settings, UnknownJobTypeError, load_plugins
from orchestrator_core.dispatch.broker import consumed_queues, queue_name
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.dispatch.sweeper import Sweeper
from orchestrator_core.sealing import Sealer
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.schedules import ScheduleStore
from orchestrator_core.telemetry.heartbeats import HEARTBEAT_SECONDS, WorkerBeat
from orchestrator_core.telemetry.logs import configure_logging
from worker.app import create_app
from worker.heartbeat import Heartbeat
from worker.listener import ChannelListener
from worker.scheduler import Scheduler

logger = logging.getLogger(__name__)


def run_worker(
    settings: Settings,
    *,
    concurrency: int,
    types: Sequence[str] | None = None,
    loglevel: str = "INFO",
) -> int:
    """Start a worker in this process and block until it stops; returns its exit status.

    :param types: job-type names to serve (default: every installed type).
    :raises UnknownJobTypeError: a name in ``types`` is not installed here.
    :raises ConfigurationError: a setting is malformed (a payload key, say).
    """
    # Here, not in the pool's processes, which build theirs with the first message.
    Sealer.from_settings(settings)
    plugins = load_plugins(allow=settings.plugins)
    names = list(plugins.job_types) if not types else list(types)
    served = [plugins.get(name).job_type for name in names]
    if not served:
        raise UnknownJobTypeError("(any)", [])
    keys = Keys(settings.prefix)
    queues = sorted({queue_name(keys, job_type) for job_type in served})
    app = create_app(settings, plugins)
    keep_logging(settings, loglevel)
    app.conf.task_queues = consumed_queues(app, keys, queues)

    stop = threading.Event()
    # With the plugins: the sweep's walk gives jobs that ended without an expiry their
    # type's retention.
    store = JobStore.from_settings(settings, plugins=plugins)
    store.log_eviction_warning()
    sweeper = Sweeper(
        store,
        Publisher.from_settings(settings),
        visibility_seconds=settings.lease_seconds,
    )
    # A deferred job that falls due sooner than the sweep would look is announced, so
    # it starts within milliseconds of its time (a freed slot's waiter, say).
    wake = threading.Event()
    waking = ChannelListener(store.redis, keys.wake_channel, on_message=lambda _: wake.set())
    waking.start()
    sweeping = threading.Thread(
        target=sweeper.run,
        args=(stop,),
        kwargs={"interval": settings.sweep_interval_seconds, "wake": wake},
        name="sweeper",
        daemon=True,
    )
    sweeping.start()
    # Every worker fires the due cron schedules; the idempotency key of each fire makes
    # one job of it however many fire it at once.
    scheduler = Scheduler(
        ScheduleStore(store.redis, keys),
        Submitter(store, Publisher.from_settings(settings), sealer=Sealer.from_settings(settings)),
        plugins,
    )
    scheduling = threading.Thread(target=scheduler.run, args=(stop,), name="scheduler", daemon=True)
    scheduling.start()
    node = f"orchestrator-{os.getpid()}@{socket.gethostname()}"
    heartbeat = Heartbeat(
        connect_redis(settings),
        keys,
        WorkerBeat(
            worker=node,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=concurrency,
            interval=HEARTBEAT_SECONDS,
            plugin_load_failures=len(plugins.report.failed),
            job_types=tuple(names),
        ),
    )
    beating = threading.Thread(target=heartbeat.run, args=(stop,), name="heartbeat", daemon=True)
    beating.start()
    if loglevel != "DEBUG":
        quiet_task_lines()
    logger.info("serving %s on queues %s", ", ".join(names), ", ".join(queues))
    worker = app.Worker(
        hostname=node,
        concurrency=concurrency,
        pool_cls="prefork",
        loglevel=loglevel,
        queues=queues,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
        quiet=True,
    )
    try:
        worker.start()
    finally:
        stop.set()
        wake.set()
        waking.stop()
        sweeping.join(timeout=5)
        beating.join(timeout=5)
        scheduling.join(timeout=5)
    return int(worker.exitcode or 0)


TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
"""Celery's loggers of a line per task received and per task succeeded."""


def quiet_task_lines() -> None:
    """Leave out Celery's two INFO lines per task: the event stream records every
    transition of every job, and on a busy worker the lines cost a share of its CPU.
    Failures are still logged; ``--log-level DEBUG`` brings the lines back."""
    for name in TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def keep_logging(settings: Settings, loglevel: str) -> None:
    """Celery configures logging when the worker and each pool process start; answering
    its ``setup_logging`` signal puts the project's configuration there instead of its
    handlers, so Celery's own lines come out in ``ORCHESTRATOR_LOG_FORMAT`` as well."""

    def configure(**_: object) -> None:
        configure_logging(settings.log_format, loglevel)

    signals.setup_logging.connect(configure, weak=False)
