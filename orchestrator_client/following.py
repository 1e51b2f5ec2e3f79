"""The bookkeeping of one wait for a job, which both clients' ``wait`` share."""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator_client import requests
from orchestrator_client.outage import Clock, Outage, stream_ended, transient
from orchestrator_client.requests import READ_TIMEOUT, StreamCall
from orchestrator_client.responses import Document
from orchestrator_client.stream import ServerEvent
from orchestrator_core.exceptions import ApiError, WaitTimeoutError
from orchestrator_core.states import TERMINAL_STATES


class Following:
    """One wait for job ``job_id``: the job as last known, what ``on_update`` was last
    shown, the deadline, and the outages on the way.

    It does no I/O. A client reads the job and streams its events when told, gives each
    document to :meth:`update` and each message to :meth:`receive`, and pauses as long as
    :meth:`failed` and :meth:`ended` say; those raise when the wait is over.
    """

    def __init__(
        self,
        job_id: str,
        on_update: Callable[[Document], None],
        *,
        poll_seconds: float,
        timeout: float | None,
        outage_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.on_update = on_update
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.outage = Outage(first_pause=poll_seconds, limit=outage_seconds, clock=clock)
        self.job: Document = {"id": job_id}
        """The job as last known."""
        self._shown: tuple[object, ...] | None = None

    @property
    def finished(self) -> bool:
        """Whether the job is COMPLETED, FAILED or CANCELLED, which ends the wait."""
        return self.job.get("state") in TERMINAL_STATES

    def stream_call(self) -> StreamCall:
        """The job's event stream from after the transitions its document holds, with a
        read timeout that ends at the deadline."""
        read_timeout = READ_TIMEOUT
        if self.deadline is not None:
            read_timeout = max(0.05, min(READ_TIMEOUT, self.deadline - self.clock()))
        position = len(self.job.get("history") or [])
        return requests.job_events(self.job_id, position=position, read_timeout=read_timeout)

    def update(self, job: Document) -> None:
        """Take ``job`` as the latest; tell ``on_update`` if it changed in what a person
        follows (state, attempt, progress, cancel request)."""
        self.outage.answered()
        self.job = job
        current = (
            job.get("state"),
            job.get("attempts"),
            job.get("progress"),
            job.get("cancel_requested"),
        )
        if current != self._shown:
            self._shown = current
            self.on_update(job)

    def receive(self, message: ServerEvent) -> bool:
        """Take ``message`` of the job's stream; return whether the job must be read again,
        for news that the event does not carry (an error, a result)."""
        self.outage.answered()
        if message.event == "transition":
            # The event says what happened, the document what came of it.
            return int(message.json().get("seq", 0)) > len(self.job.get("history") or [])
        if message.event == "progress":
            status = message.json()
            self.update(
                {
                    **self.job,
                    "progress": status.get("progress"),
                    "cancel_requested": status.get("cancel_requested"),
                }
            )
        return False

    def done(self) -> bool:
        """Whether the job is finished.

        :raises WaitTimeoutError: when it is not and the timeout has passed.
        """
        if self.finished:
            return True
        if self._late():
            raise WaitTimeoutError(self.job, self.timeout or 0.0)
        return False

    def failed(self, exc: ApiError) -> float:
        """The seconds to pause after ``exc`` before reading or streaming again.

        :raises WaitTimeoutError: when the timeout has passed during an outage.
        :raises ApiError: ``exc``, when it will not pass or the outage lasts too long.
        """
        if transient(exc) and self._late():
            raise WaitTimeoutError(self.job, self.timeout or 0.0) from exc
        return self.outage.failed(exc)

    def ended(self) -> float:
        """The seconds to pause after the job's stream ended: none when the job is
        finished, else as after a failed try.

        :raises WaitTimeoutError: as :meth:`failed`.
        :raises ApiError: as :meth:`failed`.
        """
        return 0.0 if self.finished else self.failed(stream_ended())

    @staticmethod
    def lacks_stream(exc: ApiError) -> bool:
        """Whether ``exc`` says the API has no event route, so the job must be polled."""
        # FastAPI's answer for a path it has no route for, not the API's "no job with id".
        return exc.status == 404 and exc.detail == "Not Found"

    def _late(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline
