"""How a job document is laid out in Redis, and how it is read back.

A job is one hash: scalar fields, JSON for payload, result, error, progress and the
history (an array of entries, oldest first), instants as integer microseconds of the
Redis clock. A lease or an error that is over is an empty field. Anything that does
not decode raises :class:`CorruptJobError` naming the job and the field, so one bad
document never takes a process down.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator_core.exceptions import CorruptJobError, SerializationError
from orchestrator_core.models import ErrorInfo, HistoryEntry, Job, Progress, from_micros
from orchestrator_core.states import State


def to_json(value: Any, *, what: str) -> str:
    """Compact JSON for ``value`` (pydantic models are dumped in JSON mode first).

    :raises SerializationError: when ``value`` is not JSON-serializable (NaN included).
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from None


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode_job(job_id: str, flat_hash: Sequence[str]) -> Job:
    """Build the :class:`Job` from the raw ``HGETALL`` reply (a flat name, value list).

    :raises CorruptJobError: when a field is missing or malformed.
    """
    fields = _pairs(flat_hash)
    field = "?"
    try:
        field = "state"
        state = State(fields["state"])
        field = "payload"
        payload = json.loads(fields["payload"])
        if not isinstance(payload, dict):
            raise TypeError(f"a payload is a JSON object, not {type(payload).__name__}")
        field = "result"
        result = json.loads(fields["result"]) if "result" in fields else None
        field = "error"
        error = ErrorInfo.model_validate_json(fields["error"]) if fields.get("error") else None
        field = "progress"
        progress = (
            Progress.model_validate_json(fields["progress"]) if "progress" in fields else None
        )
        field = "history"
        history = json.loads(fields["history"])
        if not isinstance(history, list):
            raise TypeError(f"a history is a JSON array, not {type(history).__name__}")
        entries = tuple(_history_entry(entry) for entry in history)
        field = "timestamps"
        # Every value is converted and checked above, so the model's validation would
        # only repeat that work on the hottest path of the worker.
        return Job.model_construct(
            id=fields["id"],
            type=fields["type"],
            state=state,
            payload=payload,
            attempts=int(fields["attempts"]),
            max_attempts=int(fields["max_attempts"]),
            created_at=from_micros(int(fields["created_us"])),
            updated_at=from_micros(int(fields["updated_us"])),
            started_at=_instant(fields.get("started_us")),
            finished_at=_instant(fields.get("finished_us")),
            cancel_requested=fields.get("cancel_requested") == "1",
            result=result,
            error=error,
            progress=progress,
            history=entries,
            priority=int(fields.get("priority") or 0),
            concurrency_key=fields.get("ckey") or None,
            not_before=_instant(fields.get("not_before_us") or None),
            waiting=_waiting(fields.get("wait")),
            rerun_of=fields.get("rerun_of") or None,
            schedule=fields.get("schedule") or None,
        )
    except (KeyError, ValueError, TypeError, ValidationError) as exc:
        raise CorruptJobError(
            f"stored job {job_id} is malformed ({field}): {type(exc).__name__}: {exc}",
            job_id=job_id,
        ) from None


def _waiting(wait: str | None) -> str | None:
    """Why a job waits, as its document says: a waiter woken by a freed slot waits for
    that slot still (``store/lua/flow.lua``)."""
    if not wait:
        return None
    return "concurrency" if wait == "woken" else wait


def _instant(micros: str | None) -> Any:
    return None if micros is None else from_micros(int(micros))


def _history_entry(entry: Any) -> HistoryEntry:
    if not isinstance(entry, dict):
        raise TypeError(f"a history entry is a JSON object, not {type(entry).__name__}")
    reason = entry.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"a history reason is a string, not {type(reason).__name__}")
    return HistoryEntry.model_construct(
        state=State(entry["state"]),
        at=from_micros(int(entry["at"])),
        attempt=int(entry["attempt"]),
        reason=reason,
    )
