"""What the test's own RabbitMQ queues hold."""

from __future__ import annotations

from kombu import Connection

from orchestrator_core.settings import Settings


def ready_messages(settings: Settings, queue: str) -> int:
    """Messages waiting in ``queue`` (delivered but unacknowledged ones not counted)."""
    with Connection(settings.broker_url) as connection:
        return int(connection.default_channel.queue_declare(queue, passive=True).message_count)
