"""How every process logs (DESIGN section 13): readable text with timestamps, or with
``ORCHESTRATOR_LOG_FORMAT=json`` one JSON object per line.

A job's lines carry ``job_id``, ``type`` and ``attempt``: the worker sets them around
each attempt (:func:`job_context`) and a filter copies them onto every record logged
in that context, a plugin's own lines included.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

JOB_FIELDS = ("job_id", "type", "attempt")
"""The record attributes (and JSON keys) of a job's context."""

TEXT_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s%(job)s: %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: str
    attempt: int
    type: str | None = None


_current: ContextVar[JobContext | None] = ContextVar("orchestrator_job", default=None)


@contextmanager
def job_context(job_id: str, attempt: int, job_type: str | None = None) -> Iterator[None]:
    """Every line logged inside carries this job, attempt and (once known) type."""
    token = _current.set(JobContext(job_id=job_id, attempt=attempt, type=job_type))
    try:
        yield
    finally:
        _current.reset(token)


def bind_job_type(job_type: str) -> None:
    """Add the type to the current job context, once the stored job has told it."""
    current = _current.get()
    if current is not None:
        _current.set(replace(current, type=job_type))


class JobContextFilter(logging.Filter):
    """Copies the current job context onto each record (never dropping one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current.get()
        if current is not None:
            for name in JOB_FIELDS:
                if getattr(record, name, None) is None:
                    setattr(record, name, getattr(current, name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC, milliseconds), level, logger,
    message, the job's fields when it has them, and the exception text when any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO name [job=... type=... attempt=1]: message``."""

    converter = staticmethod(lambda seconds: datetime.fromtimestamp(seconds, UTC).timetuple())

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, TEXT_DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        fields = [
            f"{name}={getattr(record, name)}"
            for name in JOB_FIELDS
            if getattr(record, name, None) is not None
        ]
        record.job = f" [{' '.join(fields)}]" if fields else ""
        return super().format(record)


def _timestamp(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
"""Loggers that install handlers of their own: made to hand their lines to the root's."""


def log_config(log_format: LogFormat = "text", level: LogLevel | str = "WARNING") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` of a process: one stderr handler on the root
    logger, in ``log_format``. Also what uvicorn is given as its ``log_config``, so its
    own server processes (``--workers``) log the same way."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job": {"()": JobContextFilter}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["job"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"handlers": [], "propagate": True} for name in SERVER_LOGGERS},
    }


def configure_logging(log_format: LogFormat = "text", level: LogLevel | str = "WARNING") -> None:
    """Make the root logger of this process write ``log_format`` lines to stderr from
    ``level`` up (replacing any handlers); warnings are logged too."""
    logging.config.dictConfig(log_config(log_format, level))
    logging.captureWarnings(True)
