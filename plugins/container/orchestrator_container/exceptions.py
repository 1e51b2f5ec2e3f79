"""The retryable failures of a ``container.run`` attempt, under one base class.

A failure no retry can mend (a missing image, parameters the engine rejects) is
raised as :class:`orchestrator_core.PermanentError` instead, so the job ends FAILED
at once.
"""

from __future__ import annotations

from typing import Any


class ContainerRunError(Exception):
    """Raised when an attempt of ``container.run`` failed in a way a retry may mend.

    The base of this plugin's exceptions; the worker records any of them as a failed
    attempt and retries while attempts remain.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling calls cls(*args), which lacks the keyword-only attributes.
        return (_rebuild, (type(self), self.args, self.__dict__))


class ContainerFailed(ContainerRunError):  # noqa: N818 - the name is part of the job type's contract
    """Raised when the container's command exited with a non-zero code.

    :ivar exit_code: the command's exit code (137 after a SIGKILL, e.g. out of memory).
    :ivar logs: the tail of its stdout and stderr, as collected.
    :ivar image: the image it ran.
    :ivar container_id: the short id of the (since removed) container.
    """

    def __init__(self, message: str, *, exit_code: int, logs: str, image: str, container_id: str):
        super().__init__(message)
        self.exit_code = exit_code
        self.logs = logs
        self.image = image
        self.container_id = container_id


class ContainerTimeoutError(ContainerRunError):
    """Raised when the container ran past the payload's ``timeout`` and was stopped.

    :ivar timeout: the payload's timeout, in seconds.
    :ivar logs: the tail of its stdout and stderr up to the stop.
    :ivar container_id: the short id of the (since removed) container.
    """

    def __init__(self, message: str, *, timeout: float, logs: str, container_id: str):
        super().__init__(message)
        self.timeout = timeout
        self.logs = logs
        self.container_id = container_id


class EngineUnavailableError(ContainerRunError):
    """Raised when the Docker engine cannot be reached or stops answering.

    :ivar docker_host: where the client looked for the engine.
    """

    def __init__(self, message: str, *, docker_host: str):
        super().__init__(message)
        self.docker_host = docker_host


class EngineError(ContainerRunError):
    """Raised when the engine answers with a server error, or the container ends abnormally.

    :ivar status_code: the HTTP status of the engine's answer, or None if there was none.
    """

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


def _rebuild(
    cls: type[ContainerRunError], args: tuple[Any, ...], state: dict[str, Any]
) -> ContainerRunError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error
