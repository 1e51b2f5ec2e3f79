"""Cancel requests by Redis pub/sub: the store publishes a job's id when a cancel is asked
for, and the process running that job fires its token within milliseconds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

logger = logging.getLogger(__name__)


class CancelListener:
    """A daemon thread subscribed to the cancel channel, calling ``on_cancel(job_id)``.

    A message missed while the connection is down is covered by the lease renewal,
    which reads the job's cancel flag too.
    """

    def __init__(self, client: redis.Redis, channel: str, on_cancel: Callable[[str], None]) -> None:
        self._client = client
        self._channel = channel
        self._on_cancel = on_cancel
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cancel-listener", daemon=True)

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
                        self._on_cancel(str(message["data"]))
            except redis.RedisError:
                logger.warning("cancel listener lost Redis; resubscribing", exc_info=True)
                self._stop.wait(1.0)
            finally:
                pubsub.close()
