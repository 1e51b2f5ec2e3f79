"""The container plugin: registers ``container.run``, which runs a command in a Docker container."""

from __future__ import annotations

from orchestrator_container.payload import ContainerRunPayload
from orchestrator_container.runner import JOB_TYPE, run_container
from orchestrator_core import JobType, hookimpl


@hookimpl
def register_job_types() -> list[JobType]:
    """Register ``container.run``."""
    return [
        JobType(
            name=JOB_TYPE,
            payload=ContainerRunPayload,
            execute=run_container,
            # A second attempt covers a flaky engine or command; the container's own
            # limits (the payload's timeout) bound each attempt, so the type sets none.
            max_attempts=2,
            timeout=None,
        )
    ]
