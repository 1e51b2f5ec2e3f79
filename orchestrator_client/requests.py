"""What each operation of the REST API (DESIGN section 5) sends, and what its caller gets
back from the answer, as plain values that either client sends its own way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from orchestrator_client.responses import Document
from orchestrator_core.exceptions import ApiError

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to the API."""
READ_TIMEOUT = 30.0
"""Seconds to wait for each reply (and to send each request)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request of the API, the statuses that answer it, and what the caller gets from
    the answer's status and document."""

    method: str
    path: str
    expected: frozenset[int]
    result: Callable[[int, Any], T]
    """Given the status and the answer's JSON object (its array, for a listing)."""
    params: dict[str, str | int] = field(default_factory=dict)
    body: Document | None = None
    headers: dict[str, str] = field(default_factory=dict)
    listing: bool = False
    """The answer is a JSON array of objects (``GET /job-types``), not an object."""


@dataclass(frozen=True)
class StreamCall:
    """A ``GET`` of one of the API's event streams, answered by 200 alone.

    :ivar read_timeout: the longest silence to wait through; the API sends a keepalive
        every 15 s, so the default only runs out on an API that is gone.
    """

    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    read_timeout: float = READ_TIMEOUT


def submit(
    type: str,
    payload: Document,
    *,
    max_attempts: int | None,
    idempotency_key: str | None,
    priority: int | None = None,
    concurrency_key: str | None = None,
    delay: float | None = None,
    run_at: datetime | str | None = None,
) -> Call[Document]:
    """``POST /jobs``: 201 for a new job, 200 for the job a repeated key already made.

    :param run_at: a timezone-aware instant, or its RFC 3339 text with the offset.
    """
    body: Document = {"type": type, "payload": payload}
    if isinstance(run_at, datetime):
        run_at = run_at.isoformat()  # a naive one keeps no offset: the API refuses it
    for name, value in (
        ("max_attempts", max_attempts),
        ("priority", priority),
        ("concurrency_key", concurrency_key),
        ("delay", delay),
        ("run_at", run_at),
    ):
        if value is not None:
            body[name] = value
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/jobs", frozenset({200, 201}), _document, body=body, headers=headers)


def submit_batch(jobs: list[Document], *, idempotency_key: str | None) -> Call[list[Document]]:
    """``POST /jobs/batch``: each item a ``POST /jobs`` body; all are created, in order,
    or none (201; 200 for the jobs a repeated key already made)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call(
        "POST", "/jobs/batch", frozenset({200, 201}), _items, body={"jobs": jobs}, headers=headers
    )


def get_job(job_id: str) -> Call[Document]:
    """``GET /jobs/{id}``."""
    return Call("GET", job_path(job_id), frozenset({200}), _document)


def cancel_job(job_id: str) -> Call[tuple[int, Document]]:
    """``DELETE /jobs/{id}``: 202 when the job is (or will be) cancelled, 409 when it had
    already finished; the caller gets both the status and the document."""
    return Call("DELETE", job_path(job_id), frozenset({202, 409}), _status_and_document)


def rerun_job(job_id: str) -> Call[Document]:
    """``POST /jobs/{id}/rerun``: 201 and the new job, like the finished one."""
    return Call("POST", f"{job_path(job_id)}/rerun", frozenset({201}), _document)


def job_types() -> Call[list[Document]]:
    """``GET /job-types``: the catalog, each type with its effective limits."""
    return Call("GET", "/job-types", frozenset({200}), _listed, listing=True)


def job_type(name: str) -> Call[Document]:
    """``GET /job-types/{name}``."""
    return Call("GET", job_type_path(name), frozenset({200}), _document)


def update_job_type(name: str, changes: Mapping[str, Any]) -> Call[Document]:
    """``PATCH /job-types/{name}``: the override's fields to set (None removes one); 200
    and the catalog entry with the effective values."""
    return Call("PATCH", job_type_path(name), frozenset({200}), _document, body=dict(changes))


def list_jobs(
    *, state: str | None, type: str | None, limit: int, cursor: str | None
) -> Call[Document]:
    """``GET /jobs``: one page, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    for name, value in (("state", state), ("type", type), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    return Call("GET", "/jobs", frozenset({200}), _document, params=params)


def job_events(job_id: str, *, position: int, read_timeout: float) -> StreamCall:
    """``GET /jobs/{id}/events`` with progress, from after the ``position`` transitions
    already known."""
    return StreamCall(
        f"{job_path(job_id)}/events",
        params={"progress": "true"},
        headers={"Last-Event-ID": str(position)},
        read_timeout=read_timeout,
    )


def events(*, type: str | None, state: str | None, last_event_id: str | None) -> StreamCall:
    """``GET /events``, filtered, from after ``last_event_id`` (default: from now on)."""
    params = {name: value for name, value in (("type", type), ("state", state)) if value}
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    return StreamCall("/events", params=params, headers=headers)


def job_path(job_id: str) -> str:
    """The path of job ``job_id``."""
    # Quoted whole, so an id holding "/" or "?" cannot reach another route.
    return f"/jobs/{quote(job_id, safe='')}"


def job_type_path(name: str) -> str:
    """The path of job type ``name``."""
    return f"/job-types/{quote(name, safe='')}"


def _listed(status: int, items: list[Document]) -> list[Document]:
    return items


def _document(status: int, document: Document) -> Document:
    return document


def _items(status: int, document: Document) -> list[Document]:
    items = document.get("items")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ApiError(f"{status} the API answered a batch without its list of jobs", status=status)
    return items


def _status_and_document(status: int, document: Document) -> tuple[int, Document]:
    return status, document
