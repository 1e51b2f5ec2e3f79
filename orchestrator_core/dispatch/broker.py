"""The broker side that the api and the worker share: Celery settings and the queues.

A message names the one task ``orchestrator.run_job`` and carries ``[job_id, attempt]``;
the payload stays in Redis. ``publisher.py`` sends them; the worker consumes them.
"""

from __future__ import annotations

import ssl
from typing import Any

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


def job_queue(keys: Keys, name: str) -> Queue:
    """The durable queue ``name`` (already prefixed), dead-lettering what workers reject."""
    return Queue(
        name,
        Exchange(keys.exchange, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments={"x-dead-letter-exchange": keys.dead_letter_exchange},
    )
