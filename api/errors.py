"""The one place where the orchestrator's exceptions become HTTP responses.

Bodies are ``{"detail": ...}`` and never carry a traceback, a setting or a secret;
every 5xx is logged with the job id (where there is one) and the cause.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from orchestrator_core.exceptions import (
    BodyTooLargeError,
    BrokerUnavailableError,
    IdempotencyConflictError,
    IllegalTransitionError,
    InvalidBatchError,
    InvalidQueryError,
    JobError,
    JobNotFoundError,
    OrchestratorError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    StoreUnavailableError,
    TooManyStreamsError,
    UnknownJobTypeError,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def unknown_type_detail(exc: UnknownJobTypeError) -> list[dict[str, object]]:
    return [
        {
            "loc": ["body", "type"],
            "msg": str(exc),
            "type": "unknown_job_type",
            "input": exc.job_type,
            "known_types": exc.known,
        }
    ]


def _response(status_code: int, detail: object, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers or None)


async def _orchestrator_error(request: Request, exc: Exception) -> JSONResponse:
    job_id = getattr(exc, "job_id", None)
    if isinstance(exc, JobNotFoundError | ScheduleNotFoundError):
        return _response(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, ScheduleExistsError):
        return _response(status.HTTP_409_CONFLICT, str(exc))
    if isinstance(exc, InvalidBatchError):
        return _response(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.detail)
    if isinstance(exc, UnknownJobTypeError):
        return _response(status.HTTP_422_UNPROCESSABLE_CONTENT, unknown_type_detail(exc))
    if isinstance(exc, InvalidQueryError | IdempotencyConflictError):
        return _response(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))
    if isinstance(exc, IllegalTransitionError):
        return _response(status.HTTP_409_CONFLICT, str(exc))
    if isinstance(exc, BodyTooLargeError):
        return _response(status.HTTP_413_CONTENT_TOO_LARGE, str(exc))
    if isinstance(exc, TooManyStreamsError):
        return _response(
            status.HTTP_429_TOO_MANY_REQUESTS,
            str(exc),
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, StoreUnavailableError | BrokerUnavailableError):
        service = "Redis" if isinstance(exc, StoreUnavailableError) else "the broker"
        logger.error(
            "%s %s -> 503 (job %s): %s", request.method, request.url.path, job_id or "-", exc
        )
        return _response(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{service} is unavailable; try again shortly",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.error(
        "%s %s -> 500 (job %s): %s: %s",
        request.method,
        request.url.path,
        job_id or "-",
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    detail = f"job {job_id} could not be read" if isinstance(exc, JobError) else "internal error"
    return _response(status.HTTP_500_INTERNAL_SERVER_ERROR, detail)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s -> 500", request.method, request.url.path, exc_info=exc)
    return _response(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # The client hung up while sending its body: nobody will read this answer.
    logger.info(
        "%s %s: client disconnected before sending its body", request.method, request.url.path
    )
    return _response(status.HTTP_400_BAD_REQUEST, "the request body was not received")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(Exception, _unexpected)
