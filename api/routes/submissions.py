"""``POST /jobs`` and ``POST /jobs/batch``: submissions, validated against their types.

Both hand their jobs to the process's submitter (``dispatch/submission.py``), which
stores and publishes many requests at a time; a request waits for its own outcome
without holding a thread.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.deps import Authorized, State
from api.routes.jobs import ERRORS, document
from api.schemas import JobBatch, JobCreate, JobPublic, error_details
from api.state import ApiState
from orchestrator_core.store import NewJob

router = APIRouter(tags=["jobs"], dependencies=[Authorized])

IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=255)]

BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"description": "malformed JSON, nested too deeply, or with a number too long"},
    403: {"description": "a read-only API key"},
    413: {"description": "body over the limit"},
    415: {"description": "not application/json"},
}


async def json_body(request: Request) -> Any | Response:
    """The decoded body, or the answer to a body that is not JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return JSONResponse(
            {"detail": "the body must be JSON, sent as Content-Type: application/json"},
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return JSONResponse(
            {"detail": f"malformed JSON: {exc}"}, status_code=status.HTTP_400_BAD_REQUEST
        )
    except ValueError:
        # The one other refusal of the parser: an integer too long to convert, a guard
        # against the quadratic cost of converting one (sys.get_int_max_str_digits).
        digits = sys.get_int_max_str_digits()
        return JSONResponse(
            {"detail": f"a number in the body has more than {digits} digits"},
            status_code=status.HTTP_400_BAD_REQUEST,
        )


async def _new_jobs(state: ApiState, bodies: list[JobCreate]) -> list[NewJob]:
    jobs = []
    for body in bodies:
        job_type = state.plugins.get(body.type).job_type
        priority = body.priority
        if priority is None:
            # The type's effective priority, from this process's copy of the overrides
            # (at most a second old): no Redis round trip per submission.
            priority = (await state.overrides.get(job_type.name)).get("priority")
        # The model itself: the submitter masks its secret fields and seals their values.
        new = state.submitter.new_job(
            job_type,
            body.payload,
            max_attempts=body.max_attempts,
            priority=priority,
            concurrency_key=body.concurrency_key,
            not_before_us=body.not_before_us(),
        )
        jobs.append(new)
    return jobs


@router.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={
        **BODY_ERRORS,
        200: {"model": JobPublic, "description": "a repeat of an earlier request (same key)"},
        422: {"description": "unknown type, invalid payload or reused idempotency key"},
    },
    openapi_extra={"x-job-create": "one"},  # the request body schema is filled in by openapi.py
)
async def create_job(
    request: Request, state: State, idempotency_key: IdempotencyKey = None
) -> Response:
    """Submit a job of a registered type; its payload must validate against the type's schema."""
    data = await json_body(request)
    if isinstance(data, Response):
        return data
    try:
        body = state.submissions.validate(data)
    except ValidationError as exc:
        return JSONResponse(
            {"detail": error_details(exc, ["body"])},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    submitted = await state.submitter.submit_async(
        await _new_jobs(state, [body]), idempotency_key=idempotency_key
    )
    job = submitted.jobs[0]
    return document(
        job,
        status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        headers={"Location": f"/jobs/{job.id}"},
    )


@router.post(
    "/jobs/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=JobBatch,
    responses={
        **BODY_ERRORS,
        200: {"model": JobBatch, "description": "a repeat of an earlier batch (same key)"},
        422: {
            "description": "an item with an unknown type or an invalid payload (each named "
            "by its index; nothing is submitted), or a reused idempotency key"
        },
    },
    openapi_extra={"x-job-create": "batch"},
)
async def create_batch(
    request: Request, state: State, idempotency_key: IdempotencyKey = None
) -> Response:
    """Submit 1 to 1000 jobs at once: all are validated first, and either every one is
    submitted (201, in the order sent) or none is. An ``Idempotency-Key`` covers the
    whole batch."""
    data = await json_body(request)
    if isinstance(data, Response):
        return data
    bodies = state.submissions.validate_batch(data)
    submitted = await state.submitter.submit_async(
        await _new_jobs(state, bodies), idempotency_key=idempotency_key
    )
    items = ",".join(job.model_dump_json() for job in submitted.jobs)
    return Response(
        f'{{"items":[{items}]}}',
        status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        media_type="application/json",
    )
