"""Announcements by Redis pub/sub: the store publishes a job's id when a cancel is asked
for, so the process running that job fires its token within milliseconds; and an
instant when a deferred job falls due sooner than the sweep would look, so a worker's
sweep publishes it at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

logger = logging.getLogger(__name__)


class ChannelListener:
    """A daemon thread subscribed to one channel, calling ``on_message(data)`` for each.

    What a message says must be safe to miss while the connection is down: a missed
    cancel is covered by the lease renewal, which reads the job's cancel flag too; a
    missed wake-up by the sweep's own interval.
    """

    def __init__(
        self, client: redis.Redis, channel: str, on_message: Callable[[str], None]
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listener-{channel}", daemon=True)

    def start(self, *, wait: float = 5.0) -> None:
        self._thread.start()
        self._subscribed.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                self._subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._on_message(str(message["data"]))
            except redis.RedisError:
                logger.warning(
                    "listener of %s lost Redis; resubscribing", self._channel, exc_info=True
                )
                self._stop.wait(1.0)
            finally:
                pubsub.close()
