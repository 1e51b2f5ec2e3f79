"""``CancellationToken``: how a running ``execute`` learns it must stop, and reports progress."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable

from orchestrator_core.exceptions import JobCancelled
from orchestrator_core.models import Progress

REASONS = frozenset({"cancelled", "timeout"})
"""The reasons a token can fire with: a cancel request, or the job's timeout expiring."""

MAX_PROGRESS_MESSAGE = 1000
"""Longer progress messages are cut to this many characters (they are stored on the job)."""

ProgressCallback = Callable[[float | None, str | None], None]


class CancellationToken:
    """Handed to ``execute(payload, token)``; fires once, when the job is cancelled or times out.

    The worker fires it from another thread (the cancel listener or the timeout
    timer) while ``execute`` runs, so every member is thread-safe. ``execute``
    checks it cooperatively: sleep with :meth:`wait` (or :meth:`wait_async`) instead
    of ``time.sleep``, and call :meth:`raise_if_cancelled` between steps.

    :ivar job_id: the id of the job being executed.
    :ivar attempt: the attempt number, 1 for the first run.
    """

    def __init__(
        self,
        job_id: str = "",
        attempt: int = 0,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self._on_progress = on_progress
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None
        # Async waiters, woken through their own loop because an asyncio future may
        # only be completed from its loop's thread.
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        # A separate lock so a progress callback that cancels the token cannot deadlock,
        # while concurrent reports still reach the callback in the order `progress` saw them.
        self._progress_lock = threading.Lock()
        self._progress: Progress | None = None

    def __repr__(self) -> str:
        return (
            f"CancellationToken(job_id={self.job_id!r}, attempt={self.attempt}, "
            f"reason={self._reason!r})"
        )

    def cancel(self, reason: str = "cancelled") -> bool:
        """Fire the token; the first reason wins.

        :param reason: ``"cancelled"`` for a cancel request, ``"timeout"`` when the
            job's timeout expired.
        :return: True only for the call that fired the token, False if it had fired already.
        :raises ValueError: for any other reason.
        """
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {sorted(REASONS)}, got {reason!r}")
        with self._lock:
            if self._reason is not None:
                return False
            # The reason is set before the event so a woken waiter always sees it.
            self._reason = reason
            self._event.set()
            waiters = list(self._waiters)
        for loop, future in waiters:
            # A closed loop raises RuntimeError; nobody is left waiting on it then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)
        return True

    @property
    def cancelled(self) -> bool:
        """True once the token has fired."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """``"cancelled"`` or ``"timeout"`` once the token has fired, else None."""
        return self._reason

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~orchestrator_core.JobCancelled` if the token has fired, else return.

        :raises JobCancelled: carrying the token's reason.
        """
        reason = self._reason
        if reason is not None:
            raise JobCancelled(reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking the moment the token fires.

        :return: True if the token has fired (possibly before the call), False if the
            time ran out.
        :raises ValueError: if ``seconds`` is negative or not a number.
        """
        return self._event.wait(_check_seconds(seconds))

    async def wait_async(self, seconds: float) -> bool:
        """Like :meth:`wait`, for ``async def`` execute functions; never blocks the event loop.

        :return: True if the token has fired, False if the time ran out.
        :raises ValueError: if ``seconds`` is negative or not a number.
        """
        timeout = _check_seconds(seconds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            if self._reason is not None:
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self.cancelled

    def report_progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Record how far the job has got; the worker stores it as the job's ``progress``.

        :param fraction: completed share of the work, from 0.0 to 1.0, or None if unknown.
        :param message: a short human-readable status; cut to 1000 characters.
        :raises ValueError: if ``fraction`` is outside [0, 1].
        :raises TypeError: if ``fraction`` is not a number or ``message`` not a string.

        An exception raised by the worker's progress callback propagates to the caller.
        """
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, int | float):
                raise TypeError(f"fraction must be a float or None, got {fraction!r}")
            if not 0.0 <= fraction <= 1.0:  # also rejects NaN
                raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}")
            fraction = float(fraction)
        if message is not None:
            if not isinstance(message, str):
                raise TypeError(f"message must be a str or None, got {type(message).__name__}")
            message = message[:MAX_PROGRESS_MESSAGE]
        with self._progress_lock:
            self._progress = Progress(fraction=fraction, message=message)
            if self._on_progress is not None:
                self._on_progress(fraction, message)

    @property
    def progress(self) -> Progress | None:
        """The last progress reported, or None if none was."""
        return self._progress


def _check_seconds(seconds: float) -> float | None:
    """Validate a wait; infinity means no time limit, which the primitives spell None."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds must be a number, got {seconds!r}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    return None if math.isinf(seconds) else float(seconds)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
