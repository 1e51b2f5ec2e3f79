"""The plugin author's testing kit: run a job type in-process, as a worker would, and assert.

Installed with the orchestrator as a pytest plugin (entry point ``pytest11``), so any
project that has the orchestrator installed gets the :func:`job_runner` fixture and
can import the rest from here. Nothing here needs Redis or RabbitMQ::

    from orchestrator_core.testing import JobRunner, check_distribution

    def test_count(job_runner: JobRunner) -> None:
        [count] = check_distribution("acme-jobs")
        job_runner.run(count, {"to": 3}).assert_completed(result={"counted": 3})

A run goes through the same :func:`~orchestrator_core.attempt.perform` and
:func:`~orchestrator_core.attempt.settle` the worker runs every attempt through, so the
state a test sees is the state the worker would store. To act while ``execute`` runs
(cancel it once it has done something, say), start the run and wait for it later::

    def test_cancel_once_started(job_runner: JobRunner) -> None:
        running = job_runner.start(count, {"to": 1000})
        wait_until_it_has_begun()
        running.cancel()
        running.result().assert_cancelled()
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, distribution
from types import TracebackType
from typing import Any, NoReturn

import pytest
from pydantic import BaseModel

from orchestrator_core.attempt import Outcome, escalated, perform, settle
from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.job_type import Execute, JobType
from orchestrator_core.models import ErrorInfo, Progress
from orchestrator_core.plugins import GROUP, load_plugins
from orchestrator_core.states import State
from orchestrator_core.store.records import to_json

__all__ = [
    "JobRun",
    "JobRunner",
    "RunningJob",
    "check_distribution",
    "job_runner",
    "run_job",
    "start_job",
]

POLL_SECONDS = 0.02
"""How often a run waiting for ``execute`` looks whether its token was fired by hand."""

_MISSING: Any = object()


@dataclass(frozen=True, eq=False)
class JobRun:
    """One attempt of a job run by :func:`run_job`, and what the worker would have stored.

    The assertion methods raise :class:`AssertionError` with a summary of the run
    (state, reason, error, result, progress and the traceback of what ``execute``
    raised), so a failing test says why without a debugger.
    """

    job_type: JobType
    """The job type that ran (with the ``timeout`` that applied)."""
    payload: BaseModel | None
    """The payload model instance ``execute`` received (None if it never ran)."""
    job_id: str
    """The token's ``job_id``: ``"test-<uuid>"``."""
    attempt: int
    """The token's ``attempt``."""
    outcome: Outcome
    """What the worker would store: the classified outcome, turned into ``FAILED`` when
    a failed attempt has no attempt left, and marked when ``execute`` ignored its token."""
    progress: list[Progress] = field(default_factory=list)
    """Every ``token.report_progress(...)`` call, in order."""
    ignored_token: bool = False
    """True when the token fired and ``execute`` kept running for longer than the grace:
    a worker would have stored the outcome and stopped the process."""
    duration: float = 0.0
    """Seconds from the start of ``execute`` until it returned, raised, or was given up on."""
    exception: BaseException | None = None
    """What ``execute`` raised, if it raised."""
    retry_in: float | None = None
    """For a retried attempt, the backoff before the next one (the type's
    ``retry_delay``, jitter included); None otherwise."""

    @property
    def state(self) -> State:
        """The state the worker would store: ``COMPLETED``, ``RETRYING``, ``FAILED`` or
        ``CANCELLED``."""
        return self.outcome.state

    @property
    def result(self) -> Any:
        """The result as the job document holds it (JSON types: a returned pydantic model
        is a dict, a tuple a list), or None unless the run ``COMPLETED``."""
        if self.outcome.state is not State.COMPLETED:
            return None
        return json.loads(to_json(self.outcome.result, what="result"))

    @property
    def error(self) -> ErrorInfo | None:
        """The error the job document would show (``type``, ``message``, ``retryable``)."""
        return self.outcome.error

    def assert_completed(self, result: Any = _MISSING) -> None:
        """Assert that the run ``COMPLETED``, with ``result`` (in its JSON form) if given."""
        __tracebackhide__ = True
        if self.state is not State.COMPLETED:
            self._fail("expected COMPLETED")
        if result is not _MISSING and self.result != result:
            self._fail(f"expected the result {result!r}\n     but it is {self.result!r}")

    def assert_failed(
        self,
        error_type: str | type[BaseException] | None = None,
        *,
        retryable: bool | None = None,
    ) -> None:
        """Assert that the job ended ``FAILED``: no retry will follow.

        :param error_type: the expected ``error.type``, an exception class or its name
            (the worker's own are ``"PayloadInvalid"``, ``"ResultNotSerializable"`` and
            ``"Timeout"``).
        :param retryable: the expected ``error.retryable``: False for a
            :class:`~orchestrator_core.PermanentError`, True when the last attempt failed.
        """
        __tracebackhide__ = True
        if self.state is not State.FAILED:
            self._fail("expected FAILED")
        self._check_error(error_type, retryable)

    def assert_retried(self, error_type: str | type[BaseException] | None = None) -> None:
        """Assert that the attempt failed and the worker would retry it (``RETRYING``).

        :param error_type: the expected ``error.type``, an exception class or its name.
        """
        __tracebackhide__ = True
        if self.state is not State.RETRYING:
            self._fail("expected RETRYING (a failed attempt that will be retried)")
        self._check_error(error_type, True)

    def assert_cancelled(self) -> None:
        """Assert that the run ended ``CANCELLED`` and ``execute`` stopped within the grace."""
        __tracebackhide__ = True
        if self.state is not State.CANCELLED:
            self._fail("expected CANCELLED")
        self._check_token_honoured()

    def assert_timed_out(self) -> None:
        """Assert that the attempt timed out (``error.type == "Timeout"``; ``RETRYING``, or
        ``FAILED`` on the last attempt) and ``execute`` stopped within the grace."""
        __tracebackhide__ = True
        if self.error is None or self.error.type != "Timeout":
            self._fail("expected a timed-out attempt")
        self._check_token_honoured()

    def describe(self) -> str:
        """A few lines saying how the run ended; the assertion messages start with it."""
        lines = [
            f"{self.job_type.name} (attempt {self.attempt} of {self.job_type.max_attempts}) "
            f"ended {self.state.value} after {self.duration:.3f} s",
            f"  reason: {self.outcome.reason}",
        ]
        if self.error is not None:
            kind = "retryable" if self.error.retryable else "not retryable"
            lines.append(f"  error: {self.error.type}: {self.error.message} ({kind})")
        if self.state is State.COMPLETED:
            lines.append(f"  result: {self.result!r}")
        if self.progress:
            last = self.progress[-1]
            lines.append(
                f"  progress: {len(self.progress)} report(s), the last "
                f"fraction={last.fraction!r} message={last.message!r}"
            )
        if self.ignored_token:
            lines.append("  execute ignored its fired token past the grace")
        exc = self.exception
        if exc is not None and self.error is not None and self.error.type == type(exc).__name__:
            # Only for the exception that decided the outcome, not for a JobCancelled.
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            lines.append("  execute raised:\n" + _indent(text.rstrip(), "    "))
        return "\n".join(lines)

    def _check_error(
        self, error_type: str | type[BaseException] | None, retryable: bool | None
    ) -> None:
        __tracebackhide__ = True
        error = self.error
        if error is None:
            self._fail("expected an error")
        if error_type is not None:
            expected = error_type if isinstance(error_type, str) else error_type.__name__
            if error.type != expected:
                self._fail(f"expected the error type {expected!r}, got {error.type!r}")
        if retryable is not None and error.retryable is not retryable:
            self._fail(f"expected retryable={retryable}, got retryable={error.retryable}")

    def _check_token_honoured(self) -> None:
        __tracebackhide__ = True
        if self.ignored_token:
            self._fail(
                "execute ignored its fired token for longer than the grace; a worker would "
                "stop its process. Sleep with token.wait() and call token.raise_if_cancelled() "
                "between steps"
            )

    def _fail(self, expectation: str) -> NoReturn:
        __tracebackhide__ = True
        raise AssertionError(f"{expectation}, but\n{self.describe()}")


def run_job(
    job_type: JobType,
    payload: Mapping[str, Any] | BaseModel,
    *,
    attempt: int = 1,
    cancel_after: float | None = None,
    timeout: float | None = None,
    grace: float = 1.0,
    job_id: str | None = None,
) -> JobRun:
    """Run one attempt of ``job_type`` in this process and return how it ended.

    The payload goes the way a submitted one does: validated against the type's model
    (as the API does, so an invalid one raises), stored as JSON and validated again
    (as the worker does; a payload that does not survive that ends ``FAILED`` with
    ``"PayloadInvalid"``). ``execute`` then runs in a thread with a real
    :class:`~orchestrator_core.CancellationToken`, and its outcome is classified
    exactly as the worker classifies it.

    :param job_type: the type to run, as its plugin registers it.
    :param payload: a dict of the payload's JSON, or an instance of the payload model.
    :param attempt: the token's attempt number (``token.attempt``); on the type's last
        attempt a failure ends ``FAILED`` instead of ``RETRYING``.
    :param cancel_after: fire the token with reason ``"cancelled"`` after this many
        seconds, as a ``DELETE /jobs/{id}`` would; 0 fires it before ``execute`` starts
        (a job cancelled while it waited); None never cancels.
    :param timeout: fire the token with reason ``"timeout"`` after this many seconds;
        None takes the type's own ``timeout`` (which may be none).
    :param grace: how long ``execute`` may go on after the token fired before the run
        is given up on and ``ignored_token`` is set. The worker waits
        ``ORCHESTRATOR_CANCEL_GRACE_SECONDS`` (10 s by default) and then stops the process;
        here the thread is left to finish in the background.
    :param job_id: the token's ``job_id``; None makes one (``"test-<uuid>"``).
    :raises pydantic.ValidationError: the payload is invalid (the API would answer 422).
    :raises ValueError: for an ``attempt`` outside 1..max_attempts or a negative time.
    """
    return start_job(
        job_type,
        payload,
        attempt=attempt,
        cancel_after=cancel_after,
        timeout=timeout,
        grace=grace,
        job_id=job_id,
    ).result()


def start_job(
    job_type: JobType,
    payload: Mapping[str, Any] | BaseModel,
    *,
    attempt: int = 1,
    cancel_after: float | None = None,
    timeout: float | None = None,
    grace: float = 1.0,
    job_id: str | None = None,
) -> RunningJob:
    """Start one attempt as :func:`run_job` does and return at once, while ``execute``
    runs; :meth:`RunningJob.result` waits for how it ended.

    The arguments are :func:`run_job`'s; the times count from this call.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise TypeError(f"attempt must be an int, got {attempt!r}")
    if not 1 <= attempt <= job_type.max_attempts:
        raise ValueError(
            f"attempt must be between 1 and the type's max_attempts "
            f"({job_type.max_attempts}), got {attempt}"
        )
    cancel_after = _seconds("cancel_after", cancel_after)
    timeout = _seconds("timeout", timeout)
    grace_seconds = _seconds("grace", grace)
    if grace_seconds is None:
        raise TypeError("grace must be a number of seconds, not None")
    if timeout is None:
        timeout = job_type.timeout
    elif timeout != job_type.timeout:
        # So the Timeout error names the limit that actually applied.
        job_type = replace(job_type, timeout=timeout)
    # Validated as the API validates a submission, and stored as its JSON.
    stored = job_type.validate_payload(payload).model_dump(mode="json")
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
        )


class JobRunner:
    """What the :func:`job_runner` fixture returns: runs job types and keeps the runs."""

    def __init__(self) -> None:
        self._started: list[RunningJob] = []

    def run(
        self,
        job_type: JobType,
        payload: Mapping[str, Any] | BaseModel,
        *,
        attempt: int = 1,
        cancel_after: float | None = None,
        timeout: float | None = None,
        grace: float = 1.0,
        job_id: str | None = None,
    ) -> JobRun:
        """Run one attempt; the same arguments and result as :func:`run_job`."""
        return self.start(
            job_type,
            payload,
            attempt=attempt,
            cancel_after=cancel_after,
            timeout=timeout,
            grace=grace,
            job_id=job_id,
        ).result()

    def start(
        self,
        job_type: JobType,
        payload: Mapping[str, Any] | BaseModel,
        *,
        attempt: int = 1,
        cancel_after: float | None = None,
        timeout: float | None = None,
        grace: float = 1.0,
        job_id: str | None = None,
    ) -> RunningJob:
        """Start one attempt; the same arguments and result as :func:`start_job`. Its run
        joins :attr:`runs` once :meth:`RunningJob.result` has it."""
        running = start_job(
            job_type,
            payload,
            attempt=attempt,
            cancel_after=cancel_after,
            timeout=timeout,
            grace=grace,
            job_id=job_id,
        )
        self._started.append(running)
        return running

    @property
    def runs(self) -> list[JobRun]:
        """Every run made through :meth:`run`, or started through :meth:`start` and
        waited for, in the order they were started."""
        return [r.result() for r in self._started if r.finished]


@pytest.fixture
def job_runner() -> JobRunner:
    """A :class:`JobRunner`: ``job_runner.run(job_type, payload, ...)`` runs one attempt
    in-process (no Redis, no broker) and returns a :class:`JobRun` to assert on."""
    return JobRunner()


def check_distribution(distribution_name: str) -> list[JobType]:
    """Load an installed distribution's plugins as the orchestrator would, and check them.

    Loads the entry points the distribution declares in the ``orchestrator.plugins``
    group (and no other plugin), then checks that none failed, that every job type's
    payload JSON Schema generates without a warning and that every type has a
    description (the ``execute`` docstring, or ``description=``).

    :param distribution_name: the name in the distribution's ``pyproject.toml``, e.g.
        ``"orchestrator-acme"``; it must be installed (``pip install -e .``).
    :return: the distribution's job types, sorted by name.
    :raises AssertionError: listing every problem found.
    """
    __tracebackhide__ = True
    try:
        dist = distribution(distribution_name)
    except PackageNotFoundError:
        raise AssertionError(
            f"distribution {distribution_name!r} is not installed; install it first "
            "(pip install -e .)"
        ) from None
    names = sorted({ep.name for ep in dist.entry_points if ep.group == GROUP})
    if not names:
        raise AssertionError(
            f"distribution {distribution_name!r} declares no entry point in the {GROUP!r} "
            f'group; add one to pyproject.toml:\n  [project.entry-points."{GROUP}"]\n'
            '  acme = "acme_jobs.plugin"'
        )
    plugins = load_plugins(allow=names)
    problems = [
        f"plugin {f.plugin!r} ({f.distribution} {f.version}) failed at stage {f.stage}: {f.error}"
        for f in plugins.report.failed
    ]
    ours = _canonical(distribution_name)
    job_types = [
        registered.job_type
        for registered in plugins.job_types.values()
        if _canonical(registered.plugin.distribution or "") == ours
    ]
    for job_type in job_types:
        problems.extend(_job_type_problems(job_type))
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise AssertionError(f"distribution {distribution_name!r} has problems:\n{listed}")
    return sorted(job_types, key=lambda t: t.name)


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


def _job_type_problems(job_type: JobType) -> list[str]:
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            schema = job_type.payload.model_json_schema()
            json.dumps(schema, allow_nan=False)
        except Exception as exc:
            problems.append(
                f"{job_type.name}: the payload's JSON Schema does not generate: "
                f"{type(exc).__name__}: {exc}"
            )
    problems.extend(
        f"{job_type.name}: generating the payload's JSON Schema warns: {w.message}" for w in caught
    )
    if not (job_type.description or "").strip():
        problems.append(
            f"{job_type.name}: no description; give execute a docstring or pass description="
        )
    return problems


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
