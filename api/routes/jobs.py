"""``/jobs``: read, list, cancel and re-run jobs (``submissions.py`` takes them in)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from api.deps import Authorized, State
from api.schemas import JobPage, JobPublic
from orchestrator_core import Job
from orchestrator_core.exceptions import IllegalTransitionError
from orchestrator_core.store import MAX_PAGE, CancelOutcome

router = APIRouter(tags=["jobs"], dependencies=[Authorized])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key"},
    503: {"description": "Redis or the broker is unavailable; see Retry-After"},
}


def document(job: Job, code: int, headers: dict[str, str] | None = None) -> Response:
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
    return document(state.store.get(job_id), status.HTTP_200_OK)


@router.delete(
    "/jobs/{job_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={
        **ERRORS,
        403: {"description": "a read-only API key"},
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
    return document(result.job, code)


@router.post(
    "/jobs/{job_id}/rerun",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={
        **ERRORS,
        403: {"description": "a read-only API key"},
        404: {"description": "no such job"},
        409: {"model": JobPublic, "description": "the job has not finished"},
    },
)
def rerun_job(job_id: str, state: State) -> Response:
    """Submit a new job like a finished one: the same type, payload, priority and
    concurrency key, its ``rerun_of`` naming the original."""
    try:
        job = state.submitter.rerun(job_id)
    except IllegalTransitionError:
        return document(state.store.get(job_id), status.HTTP_409_CONFLICT)
    return document(job, status.HTTP_201_CREATED, headers={"Location": f"/jobs/{job.id}"})
