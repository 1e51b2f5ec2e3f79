"""The broker side that the api and the worker share: Celery settings, the connection to
one broker of several, and the queues.

A message names the one task ``orchestrator.run_job`` and carries ``[job_id, attempt]``;
the payload stays in Redis. ``publisher.py`` sends them; the worker consumes them.

``ORCHESTRATOR_BROKER_URL`` names one broker, or several separated by commas (the nodes
of one RabbitMQ cluster): a connection goes to the first of them that answers, in the
order given, and one that breaks is made again the same way (kombu's failover).

Job queues are of the type ``ORCHESTRATOR_QUEUE_TYPE`` names:

- ``classic`` (the default): with priorities (``x-max-priority``), so the broker
  delivers a queue's waiting messages highest priority first; a queue lives on one node;
- ``quorum``: replicated on the cluster's nodes, with a delivery limit past which the
  broker dead-letters a message. RabbitMQ 3's quorum queues have no priorities: their
  messages are delivered first in, first out (jobs waiting for a concurrency slot are
  still started by priority, from Redis).

RabbitMQ cannot change a queue's type or arguments once it exists: a declaration that
asks for others closes its channel (406). So whoever declares a queue probes it first
(:func:`queue_for`), and uses a queue declared otherwise (by an earlier release, without
priorities, or as the other type) as it is, with a warning; ``orchestrator queues
upgrade`` gives the queues of an earlier release their priorities.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from amqp.exceptions import AMQPError, ChannelError, PreconditionFailed
from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.exceptions import KombuError

from orchestrator_core.exceptions import BrokerUnavailableError, ConfigurationError
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
"""The highest job priority: classic job queues have ten levels, 0..9."""
UPGRADE_COMMAND = "orchestrator queues upgrade"
"""What gives the queues of an earlier release their priorities."""
DEFAULT_DELIVERY_LIMIT = 20
"""``ORCHESTRATOR_QUEUE_DELIVERY_LIMIT``'s default."""

QueueType = Literal["classic", "quorum"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueueKind:
    """How the deployment declares its queues (``ORCHESTRATOR_QUEUE_TYPE``,
    ``ORCHESTRATOR_QUEUE_DELIVERY_LIMIT``)."""

    type: QueueType = "classic"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    """Quorum queues: deliveries of one message before the broker dead-letters it."""

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueKind:
        return cls(settings.queue_type, settings.queue_delivery_limit)


CLASSIC = QueueKind()

QUEUE_KIND = "orchestrator_queue_kind"
"""The setting of a Celery app made by :func:`make_celery` (``app.conf``) that holds the
:class:`QueueKind` of its settings."""


def broker_urls(settings: Settings) -> list[str]:
    """The brokers ``settings.broker_url`` names, in order: one URL, or several separated
    by commas (or semicolons, as Celery writes them; a comma in a password is ``%2C``).

    :raises ConfigurationError: no URL is given, or some are ``amqps://`` and some not (a
        connection keeps its TLS options whichever broker it fails over to).
    """
    urls = [url.strip() for url in re.split(r"[,;]", settings.broker_url) if url.strip()]
    if not urls:
        raise ConfigurationError("invalid settings: ORCHESTRATOR_BROKER_URL names no broker")
    if len({url.lower().startswith("amqps://") for url in urls}) > 1:
        raise ConfigurationError(
            "invalid settings: ORCHESTRATOR_BROKER_URL mixes amqps:// and plain URLs; "
            "a connection keeps its TLS options whichever broker it fails over to, so "
            "every broker must use TLS or none"
        )
    return urls


def broker_name(url: str) -> str:
    """``host:port`` of a broker URL, to name it in messages without its credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 5671 if parts.scheme.lower() == "amqps" else 5672
    return f"{parts.hostname or 'localhost'}:{port or default}"


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """TLS options for ``amqps://`` broker URLs; None for plain ones.

    Given no options, py-amqp checks the certificate's chain but not its host name; here
    the chain is verified against ``tls_ca_file`` (else the system's authorities) and
    the name against the URL's host (kombu fills in ``server_hostname``, and connects to
    ``localhost`` as 127.0.0.1, so a local certificate names both). A fresh dict each
    call: kombu writes the host name into the one it is given, once, so with several
    brokers each node's certificate must name every host of the list.

    :raises ConfigurationError: ``tls_ca_file`` is set and cannot be loaded, or the URLs
        mix ``amqps://`` and plain ones.
    """
    ca_file = trusted_ca_file(settings)
    if not broker_urls(settings)[0].lower().startswith("amqps://"):
        return None
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": ca_file, "server_hostname": None}


def broker_connection(settings: Settings, *, url: str | None = None, **options: Any) -> Connection:
    """A kombu connection to the brokers of ``settings`` (or to ``url`` alone) with their
    TLS options, for code that talks to the broker outside a Celery app; connect it with
    :func:`connect_to_broker`, which tries every broker."""
    target = url or ";".join(broker_urls(settings))
    return Connection(target, ssl=broker_ssl(settings) or False, **options)


def connect_to_broker(connection: Connection, *, timeout: float) -> None:
    """Connect ``connection`` to the first of its brokers that answers, each tried once
    (a single one twice, ``timeout`` seconds at most), each attempt bounded by the
    connection's own connect timeout; kombu by itself would give up after the second.

    :raises BrokerUnavailableError: none answered; says why, broker by broker.
    """
    brokers = max(len(connection.alt), 1)
    failures: dict[str, str] = {}

    def failed(exc: BaseException, interval: float) -> None:
        # kombu wraps the last failure in its own error: its text is the original's.
        failures[connection.host] = str(exc) or type(exc).__name__

    try:
        connection.ensure_connection(
            errback=failed,
            max_retries=max(brokers - 1, 1),
            # One overall bound would leave the last brokers untried behind a hung one.
            timeout=timeout if brokers == 1 else None,
        )
    except (KombuError, AMQPError, OSError) as exc:
        failed(exc, 0)
        raise BrokerUnavailableError(
            f"no broker answered ({'; '.join(f'{host}: {why}' for host, why in failures.items())})"
        ) from exc


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for no loss: confirmed persistent messages and late acks.

    :raises ConfigurationError: ``tls_ca_file`` is set and cannot be loaded, or the
        broker URLs are malformed.
    """
    return {
        # Celery's (and kombu's) separator of failover URLs.
        "broker_url": ";".join(broker_urls(settings)),
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
        # On quorum queues (which refuse a channel-wide prefetch) Celery detects them
        # and sets the prefetch per consumer, which is per queue consumed.
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_detect_quorum_queues": True,
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "broker_channel_error_retry": True,
    }


def make_celery(settings: Settings, main: str = "orchestrator") -> Celery:
    """The Celery app of ``settings``; :func:`queue_kind` tells how it declares queues."""
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf[QUEUE_KIND] = QueueKind.from_settings(settings)
    return app


def queue_kind(app: Celery) -> QueueKind:
    """How the queues of ``app`` are declared (classic for an app not made by
    :func:`make_celery`)."""
    kind = app.conf.get(QUEUE_KIND)
    return kind if isinstance(kind, QueueKind) else CLASSIC


def queue_name(keys: Keys, job_type: JobType) -> str:
    """The queue a job type runs on: its own ``queue``, else its name, under the prefix."""
    return keys.queue(job_type.queue or job_type.name)


def dead_letter_queue(keys: Keys, *, kind: QueueKind = CLASSIC) -> Queue:
    """Where the broker puts messages no worker can take (garbage, unknown tasks) and,
    from quorum queues, those delivered ``delivery_limit`` times. Declare it with
    :func:`declare_dead_letters`, which takes it as it exists."""
    exchange = Exchange(keys.dead_letter_exchange, type="fanout", durable=True)
    # Quorum with quorum job queues: a classic one lives on one node, and while that
    # node is down it can be neither declared nor given a dead letter.
    arguments = {"x-queue-type": "quorum"} if kind.type == "quorum" else None
    return Queue(keys.dead_letter_queue, exchange, durable=True, queue_arguments=arguments)


def job_queue(
    keys: Keys, name: str, *, priorities: bool = True, kind: QueueKind = CLASSIC
) -> Queue:
    """The durable queue ``name`` (already prefixed), dead-lettering what workers reject:
    of ``kind``'s type; classic ones with priorities 0..9 unless ``priorities`` is False
    (a queue of an earlier release, declared without them)."""
    arguments: dict[str, Any] = {"x-dead-letter-exchange": keys.dead_letter_exchange}
    if kind.type == "quorum":
        # No x-max-priority: RabbitMQ 3 refuses it on a quorum queue.
        arguments["x-queue-type"] = "quorum"
        arguments["x-delivery-limit"] = kind.delivery_limit
    elif priorities:
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


def queue_type(queue: Queue) -> QueueType:
    """The type ``queue`` is declared as."""
    return "quorum" if (queue.queue_arguments or {}).get("x-queue-type") == "quorum" else "classic"


def queue_for(connection: Connection, keys: Keys, name: str, *, kind: QueueKind = CLASSIC) -> Queue:
    """Declare the job queue ``name`` with its exchange and binding, and return it as it
    may be declared again: as ``kind`` says, or as it exists when it was declared
    otherwise (by an earlier release without priorities, or as the other type).

    A queue whose arguments match none of those (a quorum queue declared with another
    delivery limit, say) is returned marked ``no_declare`` (kombu and Celery then never
    declare it, and use it as it is), of the type the broker's refusals name, else of
    ``kind``'s.

    Each declaration is tried on a channel of its own, which the broker closes if it
    refuses: the caller's channels (a publisher's, waiting for confirms) carry on.

    :raises AMQPError: the broker refused otherwise, or the connection failed.
    """
    wanted = job_queue(keys, name, kind=kind)
    shapes = [
        job_queue(keys, name, kind=CLASSIC),
        job_queue(keys, name, kind=CLASSIC, priorities=False),
        job_queue(keys, name, kind=QueueKind("quorum", kind.delivery_limit)),
    ]
    others = [shape for shape in shapes if shape.queue_arguments != wanted.queue_arguments]
    found, refusals = _first_declared(connection, [wanted, *others])
    if found is not None:
        return found
    with _channel(connection) as channel:
        # Passive: whatever its arguments, the queue stays as it is; the binding is
        # made again in case the queue outlived it.
        channel.queue_declare(name, passive=True)
        channel.queue_bind(name, keys.exchange, routing_key=name)
    # Celery must know a quorum queue as one (it refuses a channel-wide prefetch).
    as_is = job_queue(
        keys, name, kind=QueueKind(_type_refused(refusals, kind.type), kind.delivery_limit)
    )
    as_is.no_declare = True
    return as_is


def declare_dead_letters(
    connection: Connection, keys: Keys, *, kind: QueueKind = CLASSIC
) -> Queue | None:
    """Declare the dead-letter exchange and queue: as ``kind`` says, or as the queue
    exists. Job messages need neither, so a refusal (the one node holding a classic
    dead-letter queue is down, say) is logged and None returned: publishing carries on.

    :raises AMQPError: the connection failed.
    """
    wanted = dead_letter_queue(keys, kind=kind)
    other = dead_letter_queue(keys, kind=CLASSIC if kind.type == "quorum" else QueueKind("quorum"))
    try:
        found, _ = _first_declared(connection, [wanted, other])
    except ChannelError as exc:
        found = None
        reason: str = f"{type(exc).__name__}: {exc}"
    else:
        reason = "it exists with other arguments"
    if found is None:
        logger.warning(
            "dead-letter queue %s could not be declared (%s): messages the broker "
            "dead-letters meanwhile are dropped",
            keys.dead_letter_queue,
            reason,
        )
    return found


def queue_warning(queue: Queue, kind: QueueKind) -> str | None:
    """What to tell an operator about a job queue that is not as ``kind`` says; None if
    it is."""
    name = queue.name
    if queue.no_declare:
        return (
            f"queue {name} exists with arguments other than ORCHESTRATOR_QUEUE_TYPE="
            f"{kind.type} and ORCHESTRATOR_QUEUE_DELIVERY_LIMIT={kind.delivery_limit} give "
            f"it (another delivery limit, say): it is used as it is. A queue's arguments "
            f"cannot change; a policy (rabbitmqctl set_policy, key delivery-limit) "
            f"overrides a quorum queue's limit"
        )
    found = queue_type(queue)
    if found != kind.type:
        how = (
            "replicated, without priorities (its jobs start first in, first out)"
            if found == "quorum"
            else "on one node, not replicated"
        )
        return (
            f"queue {name} is a {found} queue, not {kind.type} as ORCHESTRATOR_QUEUE_TYPE "
            f"says: it is used as it is, {how}. A queue keeps the type it was first "
            f"declared with"
        )
    if kind.type == "classic" and not has_priorities(queue):
        return legacy_queue_warning(name)
    return None


def legacy_queue_warning(name: str) -> str:
    """What to tell an operator about a queue that has no priorities."""
    return (
        f"queue {name} was declared by an earlier release, without priorities: its jobs "
        f"start first in, first out, whatever their priority. To give it priorities, stop "
        f"the workers and run `{UPGRADE_COMMAND}`"
    )


def consumed_queues(
    app: Celery, keys: Keys, names: Sequence[str], *, kind: QueueKind | None = None
) -> list[Queue]:
    """Declare the worker's queues ``names`` and the dead letters; return the queues, each
    as :func:`queue_for` found it, so that what the worker declares when it starts
    consuming is what the broker has (a queue declared otherwise would make it fail),
    and so that Celery knows which are quorum queues.

    :param kind: how to declare them (default: as ``app`` says, :func:`queue_kind`).
    :raises BrokerUnavailableError: no broker answered.
    """
    kind = kind or queue_kind(app)
    with app.connection_for_write() as connection:
        connect_to_broker(connection, timeout=app.conf.broker_connection_timeout)
        queues = [queue_for(connection, keys, name, kind=kind) for name in names]
        declare_dead_letters(connection, keys, kind=kind)
    for queue in queues:
        warning = queue_warning(queue, kind)
        if warning is not None:
            logger.warning("%s", warning)
    return queues


def _first_declared(
    connection: Connection, candidates: Sequence[Queue]
) -> tuple[Queue | None, list[tuple[Queue, str]]]:
    """The first of ``candidates`` (one queue, declared different ways) the broker
    declares, None if it refuses them all because the queue exists with other
    arguments; and each refused candidate with the broker's reason.

    :raises AMQPError: another refusal, or the connection failed.
    """
    refusals: list[tuple[Queue, str]] = []
    for candidate in candidates:
        with _channel(connection) as channel:
            try:
                candidate(channel).declare()
                return candidate, refusals
            except PreconditionFailed as exc:
                refusals.append((candidate, str(exc)))
    return None, refusals


def _type_refused(refusals: Sequence[tuple[Queue, str]], default: QueueType) -> QueueType:
    """The queue's type, when the broker refused a declaration for naming the other one
    ("inequivalent arg 'x-queue-type' ..."); else ``default``."""
    for candidate, reason in refusals:
        if "'x-queue-type'" in reason:
            return "classic" if queue_type(candidate) == "quorum" else "quorum"
    return default


@contextlib.contextmanager
def _channel(connection: Connection) -> Iterator[Any]:
    channel = connection.channel()
    try:
        yield channel
    finally:
        # Already closed when the broker refused something on it.
        with contextlib.suppress(AMQPError, OSError):
            channel.close()
