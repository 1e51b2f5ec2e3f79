"""``/job-types``: the catalog of registered job types and their schemas."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import Authorized, State
from api.schemas import JobTypePublic, PluginPublic, max_attempts_limit
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.plugins import RegisteredJobType

router = APIRouter(tags=["job types"], dependencies=[Authorized])


def describe(registered: RegisteredJobType, state: State) -> JobTypePublic:
    job_type, plugin = registered.job_type, registered.plugin
    return JobTypePublic(
        name=job_type.name,
        description=job_type.description or "",
        payload_schema=job_type.payload_schema(),
        max_attempts=job_type.max_attempts,
        max_attempts_limit=max_attempts_limit(job_type),
        timeout=job_type.timeout,
        queue=queue_name(state.store.keys, job_type),
        retry_backoff=job_type.retry_backoff,
        retry_backoff_max=job_type.retry_backoff_max,
        plugin=PluginPublic(
            name=plugin.name, distribution=plugin.distribution, version=plugin.version
        ),
    )


@router.get("/job-types", response_model=list[JobTypePublic])
def list_job_types(state: State) -> list[JobTypePublic]:
    return [describe(registered, state) for registered in state.plugins.job_types.values()]


@router.get(
    "/job-types/{name}",
    response_model=JobTypePublic,
    responses={404: {"description": "no such job type"}},
)
def get_job_type(name: str, state: State) -> JobTypePublic:
    registered = state.plugins.job_types.get(name)
    if registered is None:
        known = ", ".join(state.plugins.job_types) or "none"
        raise HTTPException(404, detail=f"unknown job type {name!r}; known types: {known}")
    return describe(registered, state)
