"""The broker side that the api and the worker share: Celery settings and the queues.

A message names the one task ``orchestrator.run_job`` and carries ``[job_id, attempt]``;
the payload stays in Redis. ``publisher.py`` sends them; the worker consumes them.

Job queues have priorities (``x-max-priority``): the broker delivers a queue's waiting
messages highest priority first. RabbitMQ cannot add them to a queue that exists
without: a declaration that asks for them closes its channel (406), so whoever
declares a queue probes it first (:func:`queue_for`) and uses a queue of an earlier
release as it is, first in, first out, until ``orchestrator queues upgrade``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

from amqp.exceptions import AMQPError, PreconditionFailed
from celery import Celery
from kombu import Connection, Exchange, Queue

from orchestrator_core.job_type import JobType
from orchestrator_core.settings import Settings
from orchestrator_core.store.connection import trusted_ca_file
from orchestrator_core.store.keys import Keys

TASK_NAME = "orchestrator.run_job"
"""The one task every job message is sent as."""

AMQP_HEARTBEAT_SECONDS = 10
"""Seconds between AMQP heartbeats on a worker's consuming connection."""
PERSISTENT = 2
"""AMQP delivery mode of a message the broker writes to disk."""
MAX_PRIORITY = 9
"""The highest job priority: job queues have ten levels, 0..9."""
UPGRADE_COMMAND = "orchestrator queues upgrade"
"""What gives the queues of an earlier release their priorities."""

logger = logging.getLogger(__name__)


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """TLS options for an ``amqps://`` broker URL; None for a plain one.

    Given no options, py-amqp checks the certificate's chain but not its host name; here
    the chain is verified against ``tls_ca_file`` (else the system's authorities) and
    the name against the URL's host (kombu fills in ``server_hostname``, and connects to
    ``localhost`` as 127.0.0.1, so a local certificate names both). A fresh dict each
    call: kombu writes the host name into the one it is given.

    :raises ConfigurationError: ``tls_ca_file`` is set and cannot be loaded.
    """
    ca_file = trusted_ca_file(settings)
    if not settings.broker_url.lower().startswith("amqps://"):
        return None
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": ca_file, "server_hostname": None}


def broker_connection(settings: Settings, **options: Any) -> Connection:
    """A kombu connection to ``settings.broker_url`` with its TLS options, for code that
    talks to the broker outside a Celery app (the readiness probe)."""
    return Connection(settings.broker_url, ssl=broker_ssl(settings) or False, **options)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for no loss: confirmed persistent messages and late acks.

    :raises ConfigurationError: ``tls_ca_file`` is set and cannot be loaded.
    """
    return {
        "broker_url": settings.broker_url,
        # Every connection of the app, the publisher's included, is made with these.
        "broker_use_ssl": broker_ssl(settings) or False,
        "broker_connection_timeout": settings.publish_timeout_seconds,
        "broker_connection_retry_on_startup": True,
        "broker_heartbeat": AMQP_HEARTBEAT_SECONDS,
        # Publisher confirms: a publish returns only once the broker has the message.
        "broker_transport_options": {"confirm_publish": True},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_delivery_mode": "persistent",
        "task_create_missing_queues": False,
        # Ack after the job's outcome is stored; a worker that dies mid-job gives the
        # message back to the queue instead of losing it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Messages reserved ahead are safe with late acks: a dead worker's go back.
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "broker_channel_error_retry": True,
    }


def make_celery(settings: Settings, main: str = "orchestrator") -> Celery:
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def queue_name(keys: Keys, job_type: JobType) -> str:
    """The queue a job type runs on: its own ``queue``, else its name, under the prefix."""
    return keys.queue(job_type.queue or job_type.name)


def dead_letter_queue(keys: Keys) -> Queue:
    """Where the broker puts messages no worker can take: garbage and unknown tasks."""
    exchange = Exchange(keys.dead_letter_exchange, type="fanout", durable=True)
    return Queue(keys.dead_letter_queue, exchange, durable=True)


def job_queue(keys: Keys, name: str, *, priorities: bool = True) -> Queue:
    """The durable queue ``name`` (already prefixed), dead-lettering what workers reject,
    with priorities 0..9 unless ``priorities`` is False (a queue of an earlier release,
    declared without them)."""
    arguments: dict[str, Any] = {"x-dead-letter-exchange": keys.dead_letter_exchange}
    if priorities:
        arguments["x-max-priority"] = MAX_PRIORITY
    return Queue(
        name,
        Exchange(keys.exchange, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=arguments,
    )


def has_priorities(queue: Queue) -> bool:
    """Whether the broker orders ``queue``'s waiting messages by priority."""
    return "x-max-priority" in (queue.queue_arguments or {})


def queue_for(connection: Connection, keys: Keys, name: str) -> Queue:
    """Declare the job queue ``name`` with its exchange and binding, and return it as it
    may be declared again: with priorities, or, when it exists without them (an earlier
    release declared it), as it is.

    The declaration is tried on a channel of its own, which the broker closes if it
    refuses: the caller's channels (a publisher's, waiting for confirms) carry on.

    :raises AMQPError: the broker refused otherwise, or the connection failed.
    """
    queue = job_queue(keys, name)
    with _channel(connection) as channel:
        try:
            queue(channel).declare()
            return queue
        except PreconditionFailed:
            pass
    legacy = job_queue(keys, name, priorities=False)
    with _channel(connection) as channel:
        # Passive: whatever its arguments, the queue stays as it is; the binding is
        # made again in case the queue outlived it.
        channel.queue_declare(name, passive=True)
        channel.queue_bind(name, keys.exchange, routing_key=name)
    return legacy


def legacy_queue_warning(name: str) -> str:
    """What to tell an operator about a queue that has no priorities."""
    return (
        f"queue {name} was declared by an earlier release, without priorities: its jobs "
        f"start first in, first out, whatever their priority. To give it priorities, stop "
        f"the workers and run `{UPGRADE_COMMAND}`"
    )


def consumed_queues(app: Celery, keys: Keys, names: Sequence[str]) -> list[Queue]:
    """The worker's queues ``names``, each as :func:`queue_for` found it, so that what
    the worker declares when it starts consuming is what the broker has (a queue
    without priorities would otherwise make it fail)."""
    with app.connection_for_write() as connection:
        queues = [queue_for(connection, keys, name) for name in names]
    for queue in queues:
        if not has_priorities(queue):
            logger.warning("%s", legacy_queue_warning(queue.name))
    return queues


@contextlib.contextmanager
def _channel(connection: Connection) -> Iterator[Any]:
    channel = connection.channel()
    try:
        yield channel
    finally:
        # Already closed when the broker refused something on it.
        with contextlib.suppress(AMQPError, OSError):
            channel.close()
