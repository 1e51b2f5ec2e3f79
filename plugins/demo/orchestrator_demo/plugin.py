"""The demo plugin: three small job types that exercise results, cancellation and retries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator_core import CancellationToken, JobType, PermanentError, hookimpl


class EchoPayload(BaseModel):
    """Payload of ``demo.echo``."""

    # Forbidden extras turn a misspelt field into a validation error instead of a default.
    model_config = ConfigDict(extra="forbid")

    message: str = Field(max_length=10_000, description="Text to return unchanged.")
    data: dict[str, Any] | None = Field(
        default=None, description="Any JSON object to return unchanged."
    )


class SleepPayload(BaseModel):
    """Payload of ``demo.sleep``."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=3600, allow_inf_nan=False, description="Total time to sleep.")
    steps: int = Field(
        default=10, ge=1, le=10_000, description="Equal slices to sleep in; progress follows each."
    )


class FailPayload(BaseModel):
    """Payload of ``demo.fail``."""

    model_config = ConfigDict(extra="forbid")

    times: int = Field(ge=0, le=100, description="Attempts that fail before one succeeds.")
    permanent: bool = Field(
        default=False, description="Fail with a permanent error instead, which is never retried."
    )
    message: str = Field(
        default="planned failure", max_length=1000, description="Text of the error raised."
    )


def echo(payload: EchoPayload, token: CancellationToken) -> dict[str, Any]:
    """Return the payload's message and data unchanged."""
    return {"message": payload.message, "data": payload.data}


def sleep(payload: SleepPayload, token: CancellationToken) -> dict[str, float]:
    """Sleep for the given seconds in equal steps, reporting progress after each.

    Stops as soon as the job is cancelled or times out, even in the middle of a step.
    """
    steps = payload.steps
    for i in range(1, steps + 1):
        if token.wait(payload.seconds / steps):
            token.raise_if_cancelled()
        token.report_progress(fraction=i / steps, message=f"step {i}/{steps}")
    return {"slept": payload.seconds}


def fail(payload: FailPayload, token: CancellationToken) -> dict[str, int]:
    """Fail the first ``times`` attempts, then succeed; fail for good if ``permanent`` is set.

    A permanent failure is never retried. Five attempts are allowed, so ``times`` of
    5 or more ends the job FAILED.
    """
    if payload.permanent:
        raise PermanentError(payload.message)
    if token.attempt <= payload.times:
        raise RuntimeError(f"{payload.message} {token.attempt}/{payload.times}")
    return {"succeeded_on_attempt": token.attempt}


@hookimpl
def register_job_types() -> list[JobType]:
    """Register ``demo.echo``, ``demo.sleep`` and ``demo.fail``."""
    return [
        JobType(name="demo.echo", payload=EchoPayload, execute=echo, max_attempts=1),
        JobType(
            name="demo.sleep", payload=SleepPayload, execute=sleep, timeout=None, max_attempts=3
        ),
        JobType(
            name="demo.fail",
            payload=FailPayload,
            execute=fail,
            max_attempts=5,
            # Short, so a demo of retries finishes in seconds.
            retry_backoff=0.2,
            retry_backoff_max=2.0,
        ),
    ]
