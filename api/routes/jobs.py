"""``/jobs``: submit, read, list and cancel jobs."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from api.deps import Authorized, State
from api.schemas import JobPage, JobPublic
from orchestrator_core import Job
from orchestrator_core.dispatch.submission import submit
from orchestrator_core.store import MAX_PAGE, CancelOutcome

router = APIRouter(tags=["jobs"], dependencies=[Authorized])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key"},
    503: {"description": "Redis or the broker is unavailable; see Retry-After"},
}


def _invalid(errors: list[ErrorDetails]) -> JSONResponse:
    detail = [
        {
            "loc": ["body", *error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in errors
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={
        **ERRORS,
        200: {"model": JobPublic, "description": "a repeat of an earlier request (same key)"},
        400: {"description": "malformed JSON"},
        413: {"description": "body over the limit"},
        415: {"description": "not application/json"},
        422: {"description": "unknown type, invalid payload or reused idempotency key"},
    },
    openapi_extra={"x-job-create": True},  # the request body schema is filled in by openapi.py
)
async def create_job(
    request: Request,
    state: State,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> Response:
    """Submit a job of a registered type; its payload must validate against the type's schema."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return JSONResponse(
            {"detail": "the body must be JSON, sent as Content-Type: application/json"},
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return JSONResponse(
            {"detail": f"malformed JSON: {exc}"}, status_code=status.HTTP_400_BAD_REQUEST
        )
    try:
        body = state.submissions.validate(data)
    except ValidationError as exc:
        return _invalid(exc.errors(include_url=False, include_input=False))
    job_type = state.plugins.get(body.type).job_type
    created = await run_in_threadpool(
        submit,
        state.store,
        state.publisher,
        job_type,
        job_type.dump_payload(body.payload),
        max_attempts=body.max_attempts,
        idempotency_key=idempotency_key,
    )
    job = created.job
    return _document(
        job,
        status.HTTP_201_CREATED if created.created else status.HTTP_200_OK,
        headers={"Location": f"/jobs/{job.id}"},
    )


def _document(job: Job, code: int, headers: dict[str, str] | None = None) -> Response:
    # Serialized by the model itself: the generic encoder costs a third of a request.
    return Response(job.model_dump_json(), code, headers, media_type="application/json")


@router.get("/jobs", response_model=JobPage, responses=ERRORS)
def list_jobs(
    state: State,
    job_state: Annotated[str | None, Query(alias="state")] = None,
    job_type: Annotated[str | None, Query(alias="type", max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> JobPage:
    """Jobs newest first, filtered by state and/or type, a page at a time."""
    page = state.store.list_jobs(state=job_state, job_type=job_type, limit=limit, cursor=cursor)
    return JobPage(items=list(page.items), next_cursor=page.next_cursor)


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    responses={**ERRORS, 404: {"description": "no such job"}},
)
def get_job(job_id: str, state: State) -> Response:
    return _document(state.store.get(job_id), status.HTTP_200_OK)


@router.delete(
    "/jobs/{job_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={
        **ERRORS,
        404: {"description": "no such job"},
        409: {"model": JobPublic, "description": "the job already COMPLETED or FAILED"},
    },
)
def cancel_job(job_id: str, state: State) -> Response:
    """Cancel a job: at once unless it is RUNNING, where its worker is told to stop."""
    result = state.store.cancel(job_id)
    code = (
        status.HTTP_409_CONFLICT
        if result.outcome is CancelOutcome.FINISHED
        else status.HTTP_202_ACCEPTED
    )
    return _document(result.job, code)
