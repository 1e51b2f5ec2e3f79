"""Request and response bodies of the REST API (DESIGN section 5).

``POST /jobs`` has one request model per installed type (:class:`SubmissionModels`),
made once per app from the plugins' payload models; the route validates with them and
the OpenAPI document is their union, so the two cannot describe different bodies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from api.keys import Role
from orchestrator_core import InvalidBatchError, Job, JobType, Plugins, State, UnknownJobTypeError
from orchestrator_core.flow import MAX_CONCURRENCY, MAX_KEY_LENGTH, MAX_PRIORITY
from orchestrator_core.models import MAX_BATCH_JOBS

MAX_ATTEMPTS_LIMIT = 100
"""The largest ``max_attempts`` a submission may ask for."""
MAX_DELAY_SECONDS = 366 * 86400
"""The furthest ahead a job may be asked to start, by ``delay`` or ``run_at``."""

JobPublic = Job


class JobCreate(BaseModel):
    """A submission of any type: what every type's own request model shares.

    Each installed type's model (see :class:`SubmissionModels`) narrows ``type`` to its
    name and ``payload`` to the plugin's payload model.
    """

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    payload: Any
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT, strict=True)
    priority: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PRIORITY,
        strict=True,
        description="0..9, higher starts first among the waiting jobs of its queue; "
        "default: the type's (with its override)",
    )
    concurrency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        strict=True,
        description="what the type's per-key limits count by, e.g. a tenant id",
    )
    delay: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        allow_inf_nan=False,
        strict=True,
        description="seconds to wait before the job may start (not with run_at)",
    )
    run_at: AwareDatetime | None = Field(
        default=None,
        description="when the job may start: an RFC 3339 timestamp with its offset, e.g. "
        "2026-01-01T12:00:00Z (not with delay)",
    )

    @field_validator("run_at", mode="wrap")
    @classmethod
    def _instant(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> datetime | None:
        if value is None:
            return None
        if info.data.get("delay") is not None:
            raise PydanticCustomError("delay_and_run_at", "give delay or run_at, not both")
        bad = PydanticCustomError(
            "run_at",
            "run_at must be an RFC 3339 timestamp with its offset, e.g. "
            "2026-01-01T12:00:00Z or 2026-01-01T13:00:00+01:00",
        )
        if not isinstance(value, str):
            raise bad  # pydantic would take a number as seconds since the epoch
        try:
            instant: datetime = handler(value)
        except ValidationError:
            raise bad from None
        if instant.timestamp() - time.time() > MAX_DELAY_SECONDS:
            raise PydanticCustomError(
                "run_at_too_far",
                "run_at may be at most {days} days ahead",
                {"days": MAX_DELAY_SECONDS // 86400},
            )
        return instant

    def not_before_us(self) -> int | None:
        """When the job may start, in microseconds since the epoch; None for at once (no
        ``delay`` or ``run_at``, or one already past). A delay counts from now."""
        if self.delay is not None:
            at = time.time() + self.delay
        elif self.run_at is not None:
            at = self.run_at.timestamp()
        else:
            return None
        return int(at * 1_000_000) if at > time.time() else None


class JobCreateAny(JobCreate):
    """The body of a submission whose type is not installed (or not given): validated so
    that its other errors are reported before the unknown type is."""

    payload: dict[str, Any]


class SubmissionModels:
    """The ``POST /jobs`` request model of every installed type, made once per app."""

    def __init__(self, plugins: Plugins) -> None:
        self._known = list(plugins.job_types)
        self._models: Mapping[str, type[JobCreate]] = {
            name: _model_for(registered.job_type) for name, registered in plugins.job_types.items()
        }

    def validate(self, data: object) -> JobCreate:
        """The submission ``data`` (decoded JSON), validated against its type's model; its
        ``payload`` is then an instance of the plugin's payload model.

        :raises pydantic.ValidationError: listing every error with its path.
        :raises UnknownJobTypeError: the body is well formed but names no installed type.
        """
        job_type = data.get("type") if isinstance(data, dict) else None
        model = self._models.get(job_type) if isinstance(job_type, str) else None
        if model is not None:
            return model.model_validate(data)
        body = JobCreateAny.model_validate(data)
        raise UnknownJobTypeError(body.type, self._known)

    def validate_batch(self, data: object) -> list[JobCreate]:
        """Every submission of a ``POST /jobs/batch`` body ``{"jobs": [...]}``, each
        validated as :meth:`validate` does.

        :raises InvalidBatchError: listing every error of every item, its path starting
            with ``jobs`` and the item's index.
        """
        if not isinstance(data, dict) or set(data) != {"jobs"}:
            raise InvalidBatchError(
                [_error(["body"], 'the body must be {"jobs": [...]}, and nothing else', "batch")]
            )
        items = data["jobs"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_JOBS:
            raise InvalidBatchError(
                [_error(["body", "jobs"], f"a list of 1 to {MAX_BATCH_JOBS} jobs", "batch_size")]
            )
        valid: list[JobCreate] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            where: list[str | int] = ["body", "jobs", index]
            try:
                valid.append(self.validate(item))
            except ValidationError as exc:
                errors.extend(error_details(exc, where))
            except UnknownJobTypeError as exc:
                unknown = _error([*where, "type"], str(exc), "unknown_job_type")
                errors.append({**unknown, "known_types": exc.known})
        if errors:
            raise InvalidBatchError(errors)
        return valid

    def json_schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request body schema (a union discriminated on ``type``) and the component
        schemas it refers to."""
        models = list(self._models.values())
        if not models:
            return {"type": "object"}, {}
        union: Any = models[0] if len(models) == 1 else Union[tuple(models)]  # noqa: UP007
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[union, Field(discriminator="type")])
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        definitions = schema.pop("$defs", {})
        return schema, definitions


def error_details(exc: ValidationError, where: Sequence[str | int]) -> list[dict[str, Any]]:
    """The API's ``detail`` entries of a body's validation errors, found at ``where``."""
    return [
        _error([*where, *error["loc"]], error["msg"], error["type"])
        for error in exc.errors(include_url=False, include_input=False)
    ]


def _error(loc: list[str | int], message: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": message, "type": kind}


def max_attempts_limit(job_type: JobType) -> int:
    """The most ``max_attempts`` a submission of ``job_type`` may ask for: the type's own
    ``max_attempts_limit``, within the API's cap."""
    own = job_type.max_attempts_limit
    return MAX_ATTEMPTS_LIMIT if own is None else min(own, MAX_ATTEMPTS_LIMIT)


def _model_for(job_type: JobType) -> type[JobCreate]:
    name, limit = job_type.name, max_attempts_limit(job_type)
    fields: dict[str, Any] = {}
    if limit < MAX_ATTEMPTS_LIMIT:
        # A type whose attempts must not repeat (shell.run) says so with a message of its
        # own, and its schema shows the cap.
        def show_limit(schema: dict[str, Any]) -> None:
            for option in schema.get("anyOf", []):
                if option.get("type") == "integer":
                    option["maximum"] = limit

        def within_limit(value: int | None) -> int | None:
            if value is not None and value > limit:
                raise PydanticCustomError(
                    "max_attempts_limit",
                    "max_attempts may be at most {limit} for {job_type} (its "
                    "max_attempts_limit); ask for fewer, or leave max_attempts out",
                    {"job_type": name, "limit": limit},
                )
            return value

        fields["max_attempts"] = (
            int | None,
            Field(default=None, ge=1, strict=True, json_schema_extra=show_limit),
        )
        fields["__validators__"] = {"_within_limit": field_validator("max_attempts")(within_limit)}
    return create_model(
        "JobCreate_" + re.sub(r"[^A-Za-z0-9]", "_", name),
        __base__=JobCreate,
        type=(Literal[name], ...),  # type: ignore[arg-type]
        payload=(job_type.payload, ...),
        **fields,
    )


class JobBatch(BaseModel):
    """The jobs of one ``POST /jobs/batch``, in the order they were sent."""

    items: list[JobPublic]


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class PluginPublic(BaseModel):
    name: str
    distribution: str | None
    version: str | None


class JobTypePublic(BaseModel):
    name: str
    description: str
    payload_schema: dict[str, Any]
    max_attempts: int
    max_attempts_limit: int
    """The most ``max_attempts`` a submission of this type may ask for."""
    timeout: float | None
    queue: str
    retry_backoff: float
    retry_backoff_max: float
    plugin: PluginPublic
    priority: int
    """The effective values of the flow control: the type's own, with ``overrides`` put
    over them."""
    concurrency: int | None
    concurrency_per_key: int | None
    rate_limit: str | None
    rate_limit_per_key: str | None
    paused: bool
    overrides: dict[str, Any]
    """What ``PATCH /job-types/{name}`` stored, ``{}`` when nothing."""


class JobTypeUpdate(BaseModel):
    """The body of ``PATCH /job-types/{name}``, as the OpenAPI document shows it: any of
    these fields; null removes that override. ``flow.parse_override`` validates it."""

    model_config = ConfigDict(extra="forbid")

    priority: int | None = Field(default=None, ge=0, le=MAX_PRIORITY)
    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    concurrency_per_key: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    rate_limit: str | None = Field(default=None, examples=["20/s", "100/m", "5/h"])
    rate_limit_per_key: str | None = Field(default=None, examples=["1/s"])
    paused: bool | None = None


class Readiness(BaseModel):
    redis: str
    broker: str
    plugin_failures: list[dict[str, Any]]


class LoadedPluginPublic(PluginPublic):
    """A plugin that loaded: its entry point's target and the job types it registered."""

    value: str
    job_types: list[str]


class PluginFailurePublic(BaseModel):
    """A plugin that was quarantined, and at which stage of loading."""

    plugin: str
    distribution: str | None
    version: str | None
    stage: str
    error: str


class PluginReport(BaseModel):
    """What loading the plugins did in this API process."""

    ok: bool
    loaded: list[LoadedPluginPublic]
    failed: list[PluginFailurePublic]
    skipped: list[str]


class StatesPublic(BaseModel):
    """The state machine as ``GET /states`` serves it; lists keep the order of the states."""

    states: list[State]
    transitions: dict[State, list[State]]
    terminal: list[State]
    startable: list[State]
    """Waiting for an attempt (CREATED, RETRYING); a cancel request cancels at once."""
    cancellable: list[State]
    """Where a cancel request has an effect; in RUNNING it asks the worker to stop."""
    succeeded: State
    """The terminal state of a job whose ``execute`` returned: the one with a result."""


class AuthPublic(BaseModel):
    """What the presented API key may do: ``admin`` everything, ``read`` only read."""

    role: Role
