"""What a job message carries: ``[job_id, attempt]``, the job itself living in Redis."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeGuard

from orchestrator_core.dispatch.publisher import Message, Publisher

logger = logging.getLogger(__name__)


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


def queue_again(
    publisher: Publisher, delivery: Mapping[str, Any] | None, message: JobMessage
) -> bool:
    """Queue a fresh copy of a held message, confirmed, so that acknowledging the held one
    loses nothing.

    Better than rejecting it with requeue: a requeued message counts as delivered again,
    and a quorum queue dead-letters one delivered past its limit, after which the job would
    have no message left. False when the copy was not confirmed (or the delivery does not
    say which queue it came from): requeue the held one instead.
    """
    queue = (delivery or {}).get("routing_key")
    if not queue:
        return False
    priority = int((delivery or {}).get("priority") or 0)
    [error] = publisher.publish_many([Message(message.job_id, message.attempt, queue, priority)])
    if error is not None:
        logger.warning("job %s: its message could not be queued again: %s", message.job_id, error)
        return False
    return True
