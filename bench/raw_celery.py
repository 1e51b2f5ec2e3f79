"""The baseline for ``worker_throughput.py``: plain Celery with a no-op task and Redis results.

Celery's defaults throughout (early acks, prefetch multiplier 4, unconfirmed
publishes), except that the queue, its exchange and the result keys are named per
run so they can be deleted afterwards. The bench runs both workers at INFO, to see
them report ready; like Celery's own default level, neither logs a line per task.
The worker finds its settings in the environment, the bench process passes them to
:func:`make_app`::

    BENCH_RAW_QUEUE=q BENCH_RAW_KEYPREFIX=q: celery -A bench.raw_celery worker -Q q
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from worker.main import TASK_LOGGERS

TASK_NAME = "bench.noop"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def make_app(*, queue: str, keyprefix: str, broker_url: str, redis_url: str) -> Celery:
    """A Celery app whose only task, ``bench.noop``, runs on ``queue`` and stores its result.

    :param keyprefix: starts every result key (Celery's ``global_keyprefix``).
    """
    app = Celery("bench-raw", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend=redis_url,
        result_backend_transport_options={"global_keyprefix": keyprefix},
        task_queues=[Queue(queue, Exchange(queue, type="direct"), routing_key=queue)],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Off as in the orchestrator's worker: the pidbox would declare a shared exchange.
        worker_enable_remote_control=False,
    )

    @app.task(name=TASK_NAME, shared=False)  # type: ignore[untyped-decorator]
    def noop() -> None:
        return None

    return app


@signals.after_setup_logger.connect  # type: ignore[untyped-decorator]
def _quiet_task_lines(**_: Any) -> None:
    for name in TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


app = make_app(
    queue=os.environ.get("BENCH_RAW_QUEUE", "bench-raw"),
    keyprefix=os.environ.get("BENCH_RAW_KEYPREFIX", "bench-raw:"),
    broker_url=os.environ.get("BENCH_RAW_BROKER_URL", DEFAULT_BROKER_URL),
    redis_url=os.environ.get("BENCH_RAW_REDIS_URL", DEFAULT_REDIS_URL),
)
