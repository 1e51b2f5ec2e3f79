"""``/job-types``: the catalog of registered job types and their schemas, and the
operator's overrides of their flow control (DESIGN section 9)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Authorized, State
from api.routes.jobs import ERRORS
from api.routes.submissions import json_body
from api.schemas import JobTypePublic, JobTypeUpdate, PluginPublic, max_attempts_limit
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.flow import parse_override
from orchestrator_core.plugins import RegisteredJobType

router = APIRouter(tags=["job types"], dependencies=[Authorized])

UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "no such job type"}}


def describe(
    registered: RegisteredJobType, state: State, override: Mapping[str, Any]
) -> JobTypePublic:
    """The catalog entry of a type, its limits the effective ones under ``override``."""
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
        **job_type.limits.with_overrides(override).as_dict(),
        overrides=dict(override),
    )


def _registered(name: str, state: State) -> RegisteredJobType:
    registered = state.plugins.job_types.get(name)
    if registered is None:
        known = ", ".join(state.plugins.job_types) or "none"
        raise HTTPException(404, detail=f"unknown job type {name!r}; known types: {known}")
    return registered


# The catalog reads the overrides from Redis on each call, so that it shows what every
# API process now applies (submissions use a copy that is at most a second old).


@router.get("/job-types", response_model=list[JobTypePublic], responses=ERRORS)
def list_job_types(state: State) -> list[JobTypePublic]:
    overrides = state.store.overrides()
    return [
        describe(registered, state, overrides.get(name, {}))
        for name, registered in state.plugins.job_types.items()
    ]


@router.get("/job-types/{name}", response_model=JobTypePublic, responses={**ERRORS, **UNKNOWN})
def get_job_type(name: str, state: State) -> JobTypePublic:
    registered = _registered(name, state)
    return describe(registered, state, state.store.overrides().get(name, {}))


@router.patch(
    "/job-types/{name}",
    response_model=JobTypePublic,
    responses={
        **ERRORS,
        **UNKNOWN,
        403: {"description": "a read-only API key"},
        422: {"description": "an unknown field or a bad value; nothing is changed"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": JobTypeUpdate.model_json_schema()}},
        }
    },
)
async def update_job_type(name: str, request: Request, state: State) -> JobTypePublic | Response:
    """Override the type's flow control for the whole deployment, from the next start of a
    job on: any of ``priority``, ``concurrency``, ``concurrency_per_key``, ``rate_limit``,
    ``rate_limit_per_key`` and ``paused`` (null removes that field's override). A paused
    type lets its running jobs finish and starts no other until it is resumed. Answers
    with the catalog entry, showing the effective values."""
    registered = _registered(name, state)
    data = await json_body(request)
    if isinstance(data, Response):
        return data
    changes = parse_override(data)  # an InvalidQueryError is a 422, before anything is stored
    stored = await run_in_threadpool(state.store.override, name, changes)
    state.overrides.put(name, stored)
    return describe(registered, state, stored)
