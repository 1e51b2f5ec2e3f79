"""Request and response bodies of the REST API (DESIGN section 5)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator_core import Job

MAX_ATTEMPTS_LIMIT = 100
"""The largest ``max_attempts`` a submission may ask for."""

JobPublic = Job


class JobCreate(BaseModel):
    """A submission; ``payload`` is checked against the type's own model afterwards."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT, strict=True)


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
    timeout: float | None
    queue: str
    retry_backoff: float
    retry_backoff_max: float
    plugin: PluginPublic


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
