"""``/schedules``: cron schedules that the workers fire, each fire making one job.

A schedule's payload is validated against its type as ``POST /jobs`` validates one, when
it is created and whenever its type or payload changes; the workers validate it again
at each fire (``worker/scheduler.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.deps import Authorized, State
from api.routes.jobs import ERRORS
from api.schemas import error_details
from api.state import ApiState
from orchestrator_core.models import Timestamp
from orchestrator_core.schedules import (
    ConcurrencyKey,
    CronText,
    Priority,
    Schedule,
    ScheduleSpec,
    ZoneName,
)
from orchestrator_core.store.schedules import ScheduleStore

router = APIRouter(tags=["schedules"], dependencies=[Authorized])

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "a read-only API key"},
    404: {"description": "no such schedule"},
    422: {
        "description": "a bad name, cron expression or time zone, an unknown type or an "
        "invalid payload"
    },
}

Document = Annotated[dict[str, Any], Body()]


class SchedulePublic(BaseModel):
    """A schedule as the API shows it: what it was given, and when it fires."""

    name: str
    cron: str
    timezone: str
    type: str
    payload: dict[str, Any]
    priority: int | None
    concurrency_key: str | None
    enabled: bool
    created_at: Timestamp
    next_run_at: Timestamp | None
    """The fire that comes next (a due one not made yet, else the first after now); null
    while paused."""
    last_run_at: Timestamp | None
    """The last fire that made a job."""
    last_job_id: str | None


class SchedulePage(BaseModel):
    items: list[SchedulePublic]


class ScheduleUpdate(BaseModel):
    """A ``PATCH``: the fields given replace the schedule's; ``priority`` or
    ``concurrency_key`` null removes it. A schedule cannot be renamed."""

    model_config = ConfigDict(extra="forbid")

    cron: CronText | None = None
    timezone: ZoneName | None = None
    type: str | None = Field(default=None, min_length=1, max_length=200)
    payload: dict[str, Any] | None = None
    priority: Priority | None = None
    concurrency_key: ConcurrencyKey | None = None
    enabled: bool | None = None

    @field_validator("cron", "timezone", "type", "payload", "enabled", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value


class _Refused(Exception):  # noqa: N818 - internal signal, never leaves this module
    """The answer to a request that failed validation, carried out of a store update."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def public(schedule: Schedule, now: datetime) -> SchedulePublic:
    return SchedulePublic(
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        type=schedule.type,
        payload=schedule.payload,
        priority=schedule.priority,
        concurrency_key=schedule.concurrency_key,
        enabled=schedule.enabled,
        created_at=schedule.created_at,
        next_run_at=schedule.next_run_at(now),
        last_run_at=schedule.last_run_at,
        last_job_id=schedule.last_job_id,
    )


def _store(state: ApiState) -> ScheduleStore:
    return ScheduleStore(state.store.redis, state.store.keys)


def _invalid(exc: ValidationError, where: list[str | int]) -> _Refused:
    return _Refused(
        JSONResponse(
            {"detail": error_details(exc, where)},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    )


def _checked_payload(
    state: ApiState, type_name: str, payload: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The payload as stored (secret fields masked) and its sealed copy (None for a type
    without secret fields), once it validates against ``type_name``.

    :raises UnknownJobTypeError: no installed type is called ``type_name``.
    :raises _Refused: the payload is invalid.
    """
    job_type = state.plugins.get(type_name).job_type
    try:
        model = job_type.validate_payload(payload)
    except ValidationError as exc:
        raise _invalid(exc, ["body", "payload"]) from None
    stored = job_type.dump_payload(model)
    if not job_type.has_secrets:
        return stored, None
    return stored, state.submitter.sealer.seal(job_type.reveal_payload(model)).text


@router.post(
    "/schedules",
    status_code=status.HTTP_201_CREATED,
    response_model=SchedulePublic,
    responses={
        **WRITE_ERRORS,
        409: {"description": "a schedule of this name exists"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ScheduleSpec.model_json_schema()}},
        }
    },
)
def create_schedule(data: Document, state: State) -> Response:
    """Create a schedule; the workers fire it from its next fire on."""
    try:
        spec = ScheduleSpec.model_validate(data)
        payload, sealed = _checked_payload(state, spec.type, spec.payload)
    except ValidationError as exc:
        return _invalid(exc, ["body"]).response
    except _Refused as refused:
        return refused.response
    store = _store(state)
    now = store.now()
    schedule = Schedule(
        **{**spec.model_dump(), "payload": payload},
        sealed=sealed,
        created_at=now,
        armed_at=now,
    )
    store.create(schedule)
    return Response(
        public(schedule, now).model_dump_json(),
        status.HTTP_201_CREATED,
        headers={"Location": f"/schedules/{schedule.name}"},
        media_type="application/json",
    )


@router.get("/schedules", response_model=SchedulePage, responses=ERRORS)
def list_schedules(state: State) -> SchedulePage:
    """Every schedule, by name."""
    store = _store(state)
    now = store.now()
    return SchedulePage(items=[public(schedule, now) for schedule in store.list()])


@router.get(
    "/schedules/{name}",
    response_model=SchedulePublic,
    responses={**ERRORS, 404: {"description": "no such schedule"}},
)
def get_schedule(name: str, state: State) -> SchedulePublic:
    store = _store(state)
    return public(store.get(name), store.now())


@router.patch("/schedules/{name}", response_model=SchedulePublic, responses=WRITE_ERRORS)
def update_schedule(name: str, data: Document, state: State) -> Response:
    """Change any field but the name. Changing the cron or time zone, or resuming a paused
    schedule, starts it afresh: fires that came before never run."""
    try:
        update = ScheduleUpdate.model_validate(data)
    except ValidationError as exc:
        return _invalid(exc, ["body"]).response
    given = update.model_dump(include=update.model_fields_set)
    store = _store(state)
    now = store.now()

    def change(current: Schedule) -> Schedule:
        fields = {**current.model_dump(), **given}
        if "type" in given or "payload" in given:
            payload = given.get("payload")
            if payload is None:  # a new type: the payload it has must suit it
                payload = current.payload
                if current.sealed is not None:
                    payload = state.submitter.sealer.unseal(current.sealed, job_id=name)
            fields["payload"], fields["sealed"] = _checked_payload(state, fields["type"], payload)
        retimed = (fields["cron"], fields["timezone"]) != (current.cron, current.timezone)
        if retimed or (fields["enabled"] and not current.enabled):
            fields["armed_at"] = now
        return Schedule.model_validate(fields)

    try:
        schedule = store.update(name, change)
    except _Refused as refused:
        return refused.response
    return Response(public(schedule, now).model_dump_json(), media_type="application/json")


@router.delete(
    "/schedules/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**ERRORS, 403: WRITE_ERRORS[403], 404: WRITE_ERRORS[404]},
)
def delete_schedule(name: str, state: State) -> Response:
    """Delete a schedule; the jobs it made stay."""
    _store(state).delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
