"""Running one attempt in this process as a worker would: :func:`run_job`,
:func:`start_job` and the :class:`RunningJob` a started run is."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, TypedDict, Unpack

from pydantic import BaseModel

from orchestrator_core.attempt import Outcome, escalated, perform, settle
from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.job_type import Execute, JobType
from orchestrator_core.models import Progress
from orchestrator_core.testing.result import JobRun

POLL_SECONDS = 0.02
"""How often a run waiting for ``execute`` looks whether its token was fired by hand."""


class RunOptions(TypedDict, total=False):
    """The options of a run, as :func:`start_job` documents them."""

    attempt: int
    max_attempts: int | None
    cancel_after: float | None
    timeout: float | None
    grace: float
    job_id: str | None


def run_job(
    job_type: JobType,
    payload: Mapping[str, Any] | BaseModel,
    **options: Unpack[RunOptions],
) -> JobRun:
    """Run one attempt of ``job_type`` in this process and return how it ended.

    The payload goes the way a submitted one does: validated against the type's model
    (as the API does, so an invalid one raises), stored as JSON and validated again
    (as the worker does; a payload that does not survive that ends ``FAILED`` with
    ``"PayloadInvalid"``); secret fields (``SecretStr``) keep their real values, as
    the worker's sealed copy does. ``execute`` then runs in a thread with a real
    :class:`~orchestrator_core.CancellationToken`, and its outcome is classified
    exactly as the worker classifies it.

    :param job_type: the type to run, as its plugin registers it.
    :param payload: a dict of the payload's JSON, or an instance of the payload model.
    :param attempt: the token's attempt number (``token.attempt``); on the job's last
        attempt a failure ends ``FAILED`` instead of ``RETRYING``.
    :param max_attempts: the job's attempts, as a client may set them per job
        (``max_attempts`` of ``POST /jobs``); None takes the type's own.
    :param cancel_after: fire the token with reason ``"cancelled"`` after this many
        seconds, as a ``DELETE /jobs/{id}`` would; 0 fires it before ``execute`` starts
        (a job cancelled while it waited); None never cancels.
    :param timeout: fire the token with reason ``"timeout"`` after this many seconds (more
        than 0); None takes the type's own ``timeout`` (which may be none).
    :param grace: how long ``execute`` may go on after the token fired before the run
        is given up on and ``ignored_token`` is set. The worker waits
        ``ORCHESTRATOR_CANCEL_GRACE_SECONDS`` (10 s by default) and then stops the process;
        here the thread is left to finish in the background.
    :param job_id: the token's ``job_id``; None makes one (``"test-<uuid>"``).
    :raises pydantic.ValidationError: the payload is invalid (the API would answer 422).
    :raises ValueError: for an ``attempt`` outside 1..max_attempts, a ``max_attempts``
        below 1, a negative time or a ``timeout`` of 0.
    """
    return start_job(job_type, payload, **options).result()


def start_job(
    job_type: JobType,
    payload: Mapping[str, Any] | BaseModel,
    *,
    attempt: int = 1,
    max_attempts: int | None = None,
    cancel_after: float | None = None,
    timeout: float | None = None,
    grace: float = 1.0,
    job_id: str | None = None,
) -> RunningJob:
    """Start one attempt as :func:`run_job` does and return at once, while ``execute``
    runs; :meth:`RunningJob.result` waits for how it ended.

    The arguments are :func:`run_job`'s; the times count from this call.
    """
    if max_attempts is not None:
        if _count("max_attempts", max_attempts) < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        # So the run settles, and describes itself, as a job with that many attempts.
        job_type = replace(job_type, max_attempts=max_attempts)
    if not 1 <= _count("attempt", attempt) <= job_type.max_attempts:
        raise ValueError(
            f"attempt must be between 1 and the job's max_attempts "
            f"({job_type.max_attempts}), got {attempt}"
        )
    cancel_after = _seconds("cancel_after", cancel_after)
    timeout = _seconds("timeout", timeout)
    grace_seconds = _seconds("grace", grace)
    if grace_seconds is None:
        raise TypeError("grace must be a number of seconds, not None")
    if timeout is None:
        timeout = job_type.timeout
    elif timeout == 0:
        # A job's timeout counts from the start of the attempt, so it cannot have expired
        # before; cancel_after=0 is the job cancelled while it waited.
        raise ValueError("timeout must be more than 0 seconds, or None for the type's own")
    elif timeout != job_type.timeout:
        # So the Timeout error names the limit that actually applied.
        job_type = replace(job_type, timeout=timeout)
    # Validated as the API validates a submission, and as the worker gets it back: its
    # JSON, secret fields with their real values (a worker opens their sealed copy).
    stored = job_type.reveal_payload(job_type.validate_payload(payload))
    deadlines = sorted(
        (seconds, reason)
        for seconds, reason in ((cancel_after, "cancelled"), (timeout, "timeout"))
        if seconds is not None
    )
    return RunningJob(
        job_type,
        stored,
        job_id=job_id if job_id is not None else f"test-{uuid.uuid4()}",
        attempt=attempt,
        deadline=deadlines[0] if deadlines else None,
        grace=grace_seconds,
    )


class RunningJob:
    """An attempt whose ``execute`` runs in a thread of its own (see :func:`start_job`).

    :ivar job_id: the token's ``job_id``.
    :ivar attempt: the token's ``attempt``.
    :ivar token: the token ``execute`` received; :meth:`cancel` fires it.
    """

    def __init__(
        self,
        job_type: JobType,
        payload: dict[str, Any],
        *,
        job_id: str,
        attempt: int,
        deadline: tuple[float, str] | None,
        grace: float,
    ) -> None:
        self.job_type = job_type
        self.job_id = job_id
        self.attempt = attempt
        self.progress: list[Progress] = []
        self.token = CancellationToken(
            job_id,
            attempt,
            on_progress=lambda fraction, message: self.progress.append(
                Progress(fraction=fraction, message=message)
            ),
        )
        self._grace = grace
        self._fired_at: float | None = None
        self._run: JobRun | None = None
        self._execution = _Execution(job_type, payload, self.token)
        self._started = time.monotonic()
        self._deadline = None
        if deadline is not None:
            seconds, reason = deadline
            if seconds == 0:
                self.cancel(reason)  # before execute starts: the job was cancelled waiting
            else:
                self._deadline = (self._started + seconds, reason)
        self._execution.thread.start()

    def cancel(self, reason: str = "cancelled") -> None:
        """Fire the token now, as a cancel request (or with ``"timeout"``, the job's
        timeout) would; the grace counts from here."""
        if self.token.cancel(reason):
            self._fired_at = time.monotonic()

    @property
    def finished(self) -> bool:
        """True once :meth:`result` has returned the run."""
        return self._run is not None

    def result(self) -> JobRun:
        """Wait until ``execute`` ended, or ignored its fired token past the grace, and
        return the run. Calling it again returns the same run."""
        if self._run is None:
            self._run = self._finish()
        return self._run

    def _finish(self) -> JobRun:
        execution = self._execution
        ignored = False
        while not execution.done.is_set():
            now = time.monotonic()
            if self._fired_at is None and self.token.cancelled:
                self._fired_at = now  # fired through the token itself
            if self._fired_at is not None:
                left = self._fired_at + self._grace - now
                if left <= 0:
                    ignored = True
                    break
            elif self._deadline is not None:
                left = self._deadline[0] - now
                if left <= 0:
                    self.cancel(self._deadline[1])
                    continue
            else:
                left = math.inf
            execution.done.wait(min(left, POLL_SECONDS))
        duration = time.monotonic() - self._started
        if execution.escaped is not None:
            raise execution.escaped
        finished = execution.outcome
        job_type = self.job_type
        outcome = (
            escalated(job_type, self.token, self._grace)
            if ignored or finished is None
            else finished
        )
        settled = settle(
            outcome, job_type, attempt=self.attempt, max_attempts=job_type.max_attempts
        )
        return JobRun(
            job_type,
            execution.payload,
            self.job_id,
            self.attempt,
            settled.outcome,
            list(self.progress),
            ignored,
            duration,
            execution.exception(),
            settled.retry_in,
            self.token.reason if ignored else execution.token_reason,
        )


class _Execution:
    """:func:`~orchestrator_core.attempt.perform` running in a thread of its own, and what
    it left behind."""

    def __init__(
        self, job_type: JobType, payload: dict[str, Any], token: CancellationToken
    ) -> None:
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.payload: BaseModel | None = None
        """The payload model instance ``execute`` received (None until it does)."""
        self.raised: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.escaped: BaseException | None = None
        self.token_reason: str | None = None
        """The token's reason when ``perform`` returned: a fire after that came too late."""
        self._job_type = replace(job_type, execute=self._recording(job_type))
        self._stored = payload
        self._token = token
        self.thread = threading.Thread(
            target=self._run, name=f"execute {job_type.name}", daemon=True
        )

    def _run(self) -> None:
        try:
            self.outcome = perform(self._job_type, self._stored, self._token)
        except BaseException as exc:  # KeyboardInterrupt and the like: the caller re-raises
            self.escaped = exc
        finally:
            self.token_reason = self._token.reason
            self.done.set()

    def _recording(self, job_type: JobType) -> Execute:
        """``execute``, wrapped to keep what it raises (``classify`` keeps only its text)."""
        execute = job_type.execute
        if job_type.is_async:

            async def execute_async(payload: Any, token: CancellationToken) -> Any:
                self.payload = payload
                try:
                    return await execute(payload, token)
                except BaseException as exc:
                    self._record(exc)
                    raise

            return execute_async

        def execute_sync(payload: Any, token: CancellationToken) -> Any:
            self.payload = payload
            try:
                return execute(payload, token)
            except BaseException as exc:
                self._record(exc)
                raise

        return execute_sync

    def exception(self) -> BaseException | None:
        """What ``execute`` raised, its traceback starting in ``execute``."""
        if self.raised is None:
            return None
        return self.raised.with_traceback(self.traceback)

    def _record(self, exc: BaseException) -> None:
        # A copy of the traceback as it is now, starting below this wrapper: the one on
        # the exception grows the frames of classify() as it propagates.
        tb = exc.__traceback__
        self.raised = exc
        self.traceback = tb.tb_next if tb is not None else None


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)
