"""How the command-line client shows job documents and pages to a person.

Each function returns lines rather than printing, so the CLI decides where they go.
Scripts use ``--json`` instead, which prints the API's documents unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator_core.states import TERMINAL_STATES, State

Document = dict[str, Any]


def summary(job: Document) -> str:
    """One line: ``job <id>  <type>  <state>  attempts <n>/<max>``, then while the job is not
    finished its progress, a pending cancel request, and the error a retry follows.

    The line changes whenever the state, attempt, progress or cancel request does,
    which is what ``submit --wait`` prints on each change.
    """
    line = (
        f"job {job.get('id')}  {job.get('type')}  {job.get('state')}  "
        f"attempts {job.get('attempts')}/{job.get('max_attempts')}"
    )
    if not _finished(job):
        progress = describe_progress(job.get("progress"))
        if progress:
            line += f"  progress {progress}"
        if job.get("cancel_requested"):
            line += "  (cancel requested)"
        error = job.get("error")
        if job.get("state") == State.RETRYING and isinstance(error, dict):
            line += f"  after {error.get('type')}: {error.get('message')}"
    return line


def outcome(job: Document) -> list[str]:
    """The result of a COMPLETED job, or the error of a failed attempt or job."""
    lines = []
    if job.get("state") == State.COMPLETED:
        lines.append(f"result: {_compact(job.get('result'))}")
    error = job.get("error")
    if isinstance(error, dict):
        kind = "" if error.get("retryable", True) else " (not retryable)"
        lines.append(f"error: {error.get('type')}: {error.get('message')}{kind}")
    return lines


def details(job: Document) -> list[str]:
    """Everything ``orchestrator get`` shows: the summary, the outcome, times and history."""
    lines = [summary(job), *outcome(job)]
    lines.append(f"payload: {_compact(job.get('payload'))}")
    times = [
        f"{name} {job[f'{name}_at']}"
        for name in ("created", "started", "finished")
        if job.get(f"{name}_at")
    ]
    if times:
        lines.append("  ".join(times))
    history = job.get("history") or []
    if history:
        lines.append("history:")
    for entry in history:
        reason = f"  {entry['reason']}" if entry.get("reason") else ""
        lines.append(
            f"  {entry.get('at')}  {entry.get('state'):<9}  attempt {entry.get('attempt')}{reason}"
        )
    return lines


def page(jobs_page: Document) -> list[str]:
    """A table of one page of jobs, with how to ask for the next page."""
    items: list[Document] = jobs_page.get("items") or []
    if not items:
        return ["no jobs"]
    rows = [("ID", "TYPE", "STATE", "ATTEMPTS", "CREATED")]
    rows += [
        (
            str(job.get("id")),
            str(job.get("type")),
            str(job.get("state")),
            f"{job.get('attempts')}/{job.get('max_attempts')}",
            str(job.get("created_at")),
        )
        for job in items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    cursor = jobs_page.get("next_cursor")
    if cursor:
        lines.append(f"more: --cursor {cursor}")
    return lines


def event_line(event: Document) -> str:
    """One transition as ``orchestrator events`` prints it:
    ``<at>  <job id>  <type>  <from> -> <state>  attempt <n>  <reason>``."""
    line = (
        f"{event.get('at')}  {event.get('job_id')}  {event.get('type')}  "
        f"{event.get('from') or '-'} -> {event.get('state')}  attempt {event.get('attempt')}"
    )
    if event.get("reason"):
        line += f"  {event['reason']}"
    return line


def describe_progress(progress: object) -> str:
    """``40% step 4/10`` from ``{"fraction": 0.4, "message": "step 4/10"}``; "" for none."""
    if not isinstance(progress, dict):
        return ""
    parts = []
    fraction = progress.get("fraction")
    if isinstance(fraction, int | float):
        parts.append(f"{fraction:.0%}")
    if progress.get("message"):
        parts.append(str(progress["message"]))
    return " ".join(parts)


def json_kind(value: object) -> str:
    """What a decoded JSON value is, in JSON's words: ``an array``, ``null``..."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"


def as_json(document: object) -> str:
    """A document as ``--json`` prints it."""
    return json.dumps(document, indent=2)


def _finished(job: Document) -> bool:
    return job.get("state") in TERMINAL_STATES


def _compact(value: object) -> str:
    return json.dumps(value, separators=(", ", ": "))
