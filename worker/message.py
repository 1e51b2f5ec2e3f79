"""What a job message carries: ``[job_id, attempt]``, the job itself living in Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypeGuard


class JobMessage(NamedTuple):
    job_id: str
    attempt: int


def job_message(values: Sequence[object]) -> JobMessage | None:
    """The message that ``values`` (the task's positional arguments) make up, or None when
    they are not one we send: the task runs nothing for those, and nothing waits on them."""
    if len(values) != 2:
        return None
    job_id, attempt = values
    if not isinstance(job_id, str) or not _is_attempt(attempt):
        return None
    return JobMessage(job_id, attempt)


def _is_attempt(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
