"""What one run of a job type ended as: :class:`JobRun`, and the assertions on it."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pydantic import BaseModel

from orchestrator_core.attempt import Outcome
from orchestrator_core.job_type import JobType
from orchestrator_core.models import ErrorInfo, Progress
from orchestrator_core.states import State
from orchestrator_core.store.records import to_json

_MISSING: Any = object()


@dataclass(frozen=True, eq=False)
class JobRun:
    """One attempt of a job run by :func:`run_job`, and what the worker would have stored.

    The assertion methods raise :class:`AssertionError` with a summary of the run
    (state, reason, error, result, progress and the traceback of what ``execute``
    raised), so a failing test says why without a debugger.
    """

    job_type: JobType
    """The job type that ran, with the ``timeout`` and ``max_attempts`` that applied."""
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
    token_reason: str | None = None
    """Why the token had fired when the run ended, ``"cancelled"`` or ``"timeout"``; None
    if it never fired (an ``execute`` that stopped on a limit of its own, say)."""

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

    def assert_completed(self, result: Any = _MISSING) -> Any:
        """Assert that the run ``COMPLETED``, with ``result`` (in its JSON form) if given.

        :return: the result, to assert on a part of it.
        """
        __tracebackhide__ = True
        if self.state is not State.COMPLETED:
            self._fail("expected COMPLETED")
        if result is not _MISSING and self.result != result:
            self._fail(f"expected the result {result!r}\n     but it is {self.result!r}")
        return self.result

    def assert_failed(
        self,
        error_type: str | type[BaseException] | None = None,
        *,
        retryable: bool | None = None,
    ) -> ErrorInfo:
        """Assert that the job ended ``FAILED``: no retry will follow.

        :param error_type: the expected ``error.type``, an exception class or its name
            (the worker's own are ``"PayloadInvalid"``, ``"ResultNotSerializable"`` and
            ``"Timeout"``).
        :param retryable: the expected ``error.retryable``: False for a
            :class:`~orchestrator_core.PermanentError`, True when the last attempt failed.
        :return: the error, to assert on its ``message``.
        """
        __tracebackhide__ = True
        if self.state is not State.FAILED:
            self._fail("expected FAILED")
        return self._check_error(error_type, retryable)

    def assert_retried(self, error_type: str | type[BaseException] | None = None) -> ErrorInfo:
        """Assert that the attempt failed and the worker would retry it (``RETRYING``).

        :param error_type: the expected ``error.type``, an exception class or its name.
        :return: the error, to assert on its ``message``.
        """
        __tracebackhide__ = True
        if self.state is not State.RETRYING:
            self._fail("expected RETRYING (a failed attempt that will be retried)")
        return self._check_error(error_type, True)

    def assert_cancelled(self) -> None:
        """Assert that the run ended ``CANCELLED`` and ``execute`` stopped within the grace."""
        __tracebackhide__ = True
        if self.state is not State.CANCELLED:
            self._fail("expected CANCELLED")
        self._check_token_honoured()

    def assert_timed_out(self) -> ErrorInfo:
        """Assert that the attempt timed out (``error.type == "Timeout"``; ``RETRYING``, or
        ``FAILED`` on the last attempt) and ``execute`` stopped within the grace.

        :return: the error, to assert on its ``message``.
        """
        __tracebackhide__ = True
        error = self.error
        if error is None or error.type != "Timeout":
            self._fail("expected a timed-out attempt")
        self._check_token_honoured()
        return error

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
    ) -> ErrorInfo:
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
        return error

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


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
