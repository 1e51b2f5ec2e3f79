"""Removing what a test run left on the shared Redis and RabbitMQ, by its prefix."""

from __future__ import annotations

from collections.abc import Iterable

import redis
from amqp.exceptions import ChannelError
from kombu import Connection

from orchestrator_core import Plugins
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.store.keys import Keys


def delete_keys(client: redis.Redis, prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


def job_queues(prefix: str, plugins: Plugins) -> list[str]:
    """The queues the job types of ``plugins`` run on under ``prefix``."""
    keys = Keys(prefix)
    return sorted({queue_name(keys, r.job_type) for r in plugins.job_types.values()})


def delete_broker_objects(broker_url: str, prefix: str, queues: Iterable[str]) -> None:
    """Delete ``queues``, the dead-letter queue and the exchanges of ``prefix``.

    A channel each: deleting what was never declared closes its channel, not the others'.
    """
    keys = Keys(prefix)
    objects = [("queue", name) for name in [*queues, keys.dead_letter_queue]]
    objects += [("exchange", keys.exchange), ("exchange", keys.dead_letter_exchange)]
    with Connection(broker_url, connect_timeout=5) as connection:
        for kind, name in objects:
            channel = connection.channel()
            try:
                if kind == "queue":
                    channel.queue_delete(name)
                else:
                    channel.exchange_delete(name)
            except ChannelError:
                continue  # the broker closed that channel along with its refusal
            channel.close()
