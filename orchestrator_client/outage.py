"""The tries of a client that keeps following the API while it is away for a moment."""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator_core.exceptions import ApiError

TRANSIENT_STATUSES = frozenset({None, 502, 503, 504})
"""Failures that a moment's wait may mend: no answer, or a gateway or service away."""

MAX_PAUSE = 5.0
"""The longest pause between two tries while the API is away."""

Clock = Callable[[], float]
"""Seconds on a clock that only goes forward, :func:`time.monotonic` outside tests."""


def transient(exc: ApiError) -> bool:
    """Whether ``exc`` is a failure that a moment's wait may mend."""
    return exc.status in TRANSIENT_STATUSES


def stream_ended() -> ApiError:
    """The failure a stream that the API ended early counts as (it is stopping, or found
    the reader slow), so that a stream that keeps ending cannot spin."""
    return ApiError("the event stream ended early", status=None)


class Outage:
    """How long the API has been away, and the pause before the next try: ``first_pause``,
    doubling up to :data:`MAX_PAUSE`, until an answer comes.

    :param limit: seconds without an answer after which a failure is final.
    """

    def __init__(self, *, first_pause: float, limit: float, clock: Clock = time.monotonic) -> None:
        self.first_pause = first_pause
        self.limit = limit
        self.clock = clock
        self.since: float | None = None
        """When the first failure since the last answer came, if one did."""
        self._pause = first_pause

    def answered(self) -> None:
        """The API answered: the outage, if any, is over."""
        self.since, self._pause = None, self.first_pause

    def failed(self, exc: ApiError) -> float:
        """The seconds to pause before trying again after ``exc``.

        :raises ApiError: ``exc`` itself, when it is not transient or the API has been
            away for longer than ``limit``.
        """
        if not transient(exc):
            raise exc
        now = self.clock()
        if self.since is None:
            self.since = now
        if now - self.since > self.limit:
            raise exc
        pause, self._pause = self._pause, min(self._pause * 2, MAX_PAUSE)
        return pause
