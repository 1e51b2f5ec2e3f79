"""The worker's Celery application: one generic task, ``run_job(job_id, attempt)``."""

from __future__ import annotations

import logging
import time
from typing import ClassVar

from celery import Celery
from celery.exceptions import Reject
from celery.worker.consumer import Consumer

from orchestrator_core import Plugins, Settings
from orchestrator_core.dispatch.broker import TASK_NAME, make_celery
from orchestrator_core.exceptions import StoreUnavailableError
from worker.acknowledger import acknowledger_step
from worker.message import job_message, queue_again
from worker.runtime import runtime

logger = logging.getLogger(__name__)

REQUEUE_PAUSE_SECONDS = 1.0
"""How long a process waits before giving back a message it could not start (Redis away)."""


class JobConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer without its ``DelayedDelivery`` step, which quorum queues switch
    on: it declares unprefixed ``celery_delayed_*`` queues (the project's names all start
    with the prefix) and holds consumption back after a broker failover while it retries
    the node that went. Jobs wait for their time in Redis, never in the broker."""

    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        default_steps: ClassVar[list[str]] = [
            step
            for step in Consumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]


def create_app(settings: Settings, plugins: Plugins) -> Celery:
    """The Celery app of a worker that runs the given plugins' job types."""
    app = make_celery(settings, "orchestrator-worker")
    app.conf.worker_consumer = f"{__name__}:JobConsumer"
    if settings.early_ack_seconds > 0:
        app.steps["consumer"].add(acknowledger_step(settings))

    @app.task(name=TASK_NAME, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(
        job_id: object = None, attempt: object = 1, *args: object, **kwargs: object
    ) -> None:
        """Run one attempt of a job; the message carries ids only, the job lives in Redis."""
        message = job_message((job_id, attempt, *args))
        if kwargs or message is None:
            # Not a message we sent: never crash, never run anything, leave a trace.
            logger.error(
                "dropping malformed job message: args=%r kwargs=%r",
                (job_id, attempt, *args),
                kwargs,
            )
            return
        current = runtime(settings, plugins)
        try:
            current.runner.run(*message)
        except StoreUnavailableError as exc:
            # Nothing was started: the message must go back rather than be acked and strand
            # the job. The pause keeps a Redis outage from becoming a redelivery storm.
            logger.warning("job %s: %s; the message goes back to the queue", job_id, exc)
            time.sleep(REQUEUE_PAUSE_SECONDS)
            if not queue_again(current.publisher, run_job.request.delivery_info, message):
                raise Reject(str(exc), requeue=True) from exc

    return app
