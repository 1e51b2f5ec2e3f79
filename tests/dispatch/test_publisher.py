"""Publishing many messages with their confirms awaited together, against real RabbitMQ."""

from __future__ import annotations

import time
import uuid

from kombu import Connection
from queues import ready_messages as ready

from orchestrator_core import BrokerUnavailableError
from orchestrator_core.dispatch.publisher import Message, Publisher
from orchestrator_core.settings import Settings


def test_every_message_of_a_batch_is_confirmed_and_queued(
    publisher: Publisher, broker_settings: Settings
) -> None:
    queue = f"{broker_settings.prefix}.t.demo"
    messages = [Message(str(uuid.uuid4()), 1, queue) for _ in range(500)]

    assert publisher.publish_many(messages) == [None] * 500
    assert publisher.publish_many(messages[:3]) == [None] * 3  # the channel carries on

    assert ready(broker_settings, queue) == 503


def test_a_message_no_queue_takes_fails_alone(
    publisher: Publisher, broker_settings: Settings
) -> None:
    queue = f"{broker_settings.prefix}.t.demo"
    publisher.publish(str(uuid.uuid4()), 1, queue)  # declares the queue
    with Connection(broker_settings.broker_url) as connection:
        connection.default_channel.queue_delete(queue)  # an operator deletes it

    outcomes = publisher.publish_many(
        [Message(str(uuid.uuid4()), 1, queue), Message(str(uuid.uuid4()), 1, queue)]
    )

    # Unroutable: the broker confirms them but says no queue took them; not silently lost.
    assert all(isinstance(outcome, BrokerUnavailableError) for outcome in outcomes)
    assert "route" in str(outcomes[0])
    # The next message declares the queue again and gets through.
    assert publisher.publish_many([Message(str(uuid.uuid4()), 1, queue)]) == [None]
    assert ready(broker_settings, queue) == 1


def test_an_unreachable_broker_fails_every_message_within_the_timeout(
    unreachable_publisher: Publisher,
) -> None:
    started = time.monotonic()
    messages = [Message(str(uuid.uuid4()), 1, "q") for _ in range(20)]
    outcomes = unreachable_publisher.publish_many(messages)
    assert all(isinstance(outcome, BrokerUnavailableError) for outcome in outcomes)
    assert time.monotonic() - started < 10
