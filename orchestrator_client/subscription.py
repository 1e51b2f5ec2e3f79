"""The bookkeeping of one follower of every job's transitions, which both clients'
``events`` share."""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator_client import requests
from orchestrator_client.outage import Clock, Outage, stream_ended
from orchestrator_client.requests import StreamCall
from orchestrator_client.responses import Document
from orchestrator_client.stream import ServerEvent
from orchestrator_core.exceptions import ApiError

FIRST_PAUSE = 0.2
"""Seconds before the first try to open the stream again."""


class Subscription:
    """Transitions of jobs of ``type`` and/or in ``state``: where to resume after a drop,
    and the outages on the way.

    It does no I/O. A client streams what :meth:`stream_call` says, hands each message to
    :meth:`receive` and pauses as long as :meth:`failed` and :meth:`ended` say; those
    raise when following is over.
    """

    def __init__(
        self,
        *,
        type: str | None,
        state: str | None,
        last_event_id: str | None,
        outage_seconds: float,
        on_gap: Callable[[str], None] | None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.type = type
        self.state = state
        self.last_event_id = last_event_id
        """The id of the last transition received (or the one to resume after)."""
        self.on_gap = on_gap
        self.outage = Outage(first_pause=FIRST_PAUSE, limit=outage_seconds, clock=clock)

    def stream_call(self) -> StreamCall:
        """The stream of ``GET /events`` from after the last transition received."""
        return requests.events(type=self.type, state=self.state, last_event_id=self.last_event_id)

    def receive(self, message: ServerEvent) -> Document | None:
        """Take ``message``; return the transition it carries, if it is one."""
        self.outage.answered()
        gap = message.comment is not None and message.comment.startswith("trimmed")
        if gap and self.on_gap is not None:
            self.on_gap(str(message.comment))
        if message.event != "transition":
            return None
        self.last_event_id = message.id or self.last_event_id
        return message.json()

    def failed(self, exc: ApiError) -> float:
        """The seconds to pause after ``exc`` before opening the stream again.

        :raises ApiError: ``exc``, when it will not pass or the outage lasts too long.
        """
        return self.outage.failed(exc)

    def ended(self) -> float:
        """The seconds to pause after the API ended the stream, as after a failed try.

        :raises ApiError: as :meth:`failed`.
        """
        return self.outage.failed(stream_ended())
