"""``orchestrator submit --batch FILE``: jobs read as JSON lines, submitted in batches."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from cli import output
from orchestrator_core.models import MAX_BATCH_JOBS

if TYPE_CHECKING:
    from orchestrator_client import Client


def read_jobs(source: IO[str], name: str) -> list[dict[str, Any]]:
    """The jobs of ``source``: a ``POST /jobs`` body (a JSON object) per line; blank lines
    are left out.

    :raises argparse.ArgumentTypeError: naming the first line that is not such an object.
    """
    jobs = []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{name}, line {number}: not valid JSON: {exc}"
            raise argparse.ArgumentTypeError(message) from None
        if not isinstance(job, dict):
            kind = output.json_kind(job)
            raise argparse.ArgumentTypeError(
                f"{name}, line {number}: a job is a JSON object "
                '{"type": ..., "payload": {...}}, not ' + kind
            )
        jobs.append(job)
    if not jobs:
        raise argparse.ArgumentTypeError(f"{name}: no job in it")
    return jobs


def open_jobs(name: str) -> list[dict[str, Any]]:
    """:func:`read_jobs` of the file ``name``, or of standard input for ``-``."""
    if name == "-":
        return read_jobs(sys.stdin, "standard input")
    try:
        with open(name, encoding="utf-8") as source:
            return read_jobs(source, name)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {name}: {exc.strerror}") from None


def submit_all(
    client: Client, jobs: list[dict[str, Any]], *, idempotency_key: str | None
) -> Iterator[dict[str, Any]]:
    """Submit ``jobs`` a batch at a time, in order; yields each batch's documents as they
    come. With a key, batch n is sent under ``<key>:<n>``, so a repeated command repeats
    each batch."""
    for number, chunk in enumerate(_chunks(jobs, MAX_BATCH_JOBS)):
        key = None if idempotency_key is None else f"{idempotency_key}:{number}"
        yield from client.submit_batch(chunk, idempotency_key=key)


def _chunks(items: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
