"""Flow control (DESIGN section 9): a job type's priority, concurrency and rate limits,
and the operator's overrides of them.

The limits are enforced in Redis, in the one atomic step that starts a job
(``store/lua/flow.lua``): the values here are only what that step is told. A type's
own values come from its ``JobType``; an operator's override (``PATCH
/job-types/{name}``) is stored in Redis and wins over them, field by field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from orchestrator_core.exceptions import InvalidQueryError

MAX_PRIORITY = 9
MAX_CONCURRENCY = 1_000_000
MAX_KEY_LENGTH = 200
"""The longest ``concurrency_key`` a job may carry."""

_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([smh])\s*")
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_RATE_PER_SECOND = 100_000


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts per ``period`` seconds, evenly spaced (GCRA: one start
    every ``period / count`` seconds, no burst beyond it)."""

    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"20/s"``, ``"100/m"``, ``"5/h"``.

        :raises ValueError: anything else, a count of 0, or more than 100,000 a second.
        """
        match = _RATE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"a rate looks like '20/s', '100/m' or '5/h', not {text!r}")
        count, period = int(match.group(1)), _PERIODS[match.group(2)]
        if count < 1 or count / period > MAX_RATE_PER_SECOND:
            raise ValueError(
                f"a rate counts 1 to {MAX_RATE_PER_SECOND:,} starts a second, not {text!r}"
            )
        return cls(count, period)

    @property
    def interval_ms(self) -> float:
        """Milliseconds between two starts."""
        return self.period * 1000.0 / self.count

    def __str__(self) -> str:
        unit = next(name for name, seconds in _PERIODS.items() if seconds == self.period)
        return f"{self.count}/{unit}"


@dataclass(frozen=True, slots=True)
class Limits:
    """What decides when a job of one type may start: the effective values, or (as an
    override) only the fields an operator set."""

    priority: int = 0
    concurrency: int | None = None
    concurrency_per_key: int | None = None
    rate_limit: str | None = None
    rate_limit_per_key: str | None = None
    paused: bool = False

    def __post_init__(self) -> None:
        for name in LIMIT_FIELDS:
            object.__setattr__(self, name, check(name, getattr(self, name)))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Limits:
        """These values with an override's fields put over them (each checked)."""
        return replace(
            self, **{name: overrides[name] for name in LIMIT_FIELDS if name in overrides}
        )

    def script_arguments(self) -> dict[str, Any]:
        """What the start step is told of a type's own limits (no override in it)."""
        used = {name: value for name, value in script_form(self.as_dict()).items() if value}
        return {"priority": self.priority, **used}

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LIMIT_FIELDS}


LIMIT_FIELDS = tuple(f.name for f in fields(Limits))
"""The fields ``PATCH /job-types/{name}`` may set."""


def script_form(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Limits as the start step reads them (``store/lua/flow.lua``): a rate as the
    milliseconds between two starts, None kept (an override's removal), and no
    priority, which a job gets when it is submitted."""
    return {
        name: Rate.parse(value).interval_ms
        if value is not None and name in ("rate_limit", "rate_limit_per_key")
        else value
        for name, value in fields.items()
        if name != "priority"
    }


def check(name: str, value: Any) -> Any:
    """``value`` as field ``name`` of :class:`Limits` holds it.

    :raises ValueError: naming the field, the value and what it takes.
    """
    if name == "priority":
        if not _is_int(value) or not 0 <= value <= MAX_PRIORITY:
            raise ValueError(f"priority must be an integer from 0 to {MAX_PRIORITY}, not {value!r}")
        return value
    if name in ("concurrency", "concurrency_per_key"):
        if value is not None and (not _is_int(value) or not 1 <= value <= MAX_CONCURRENCY):
            raise ValueError(
                f"{name} must be an integer from 1 to {MAX_CONCURRENCY:,}, or null, not {value!r}"
            )
        return value
    if name in ("rate_limit", "rate_limit_per_key"):
        if value is None:
            return None
        return str(Rate.parse(value))
    if name == "paused":
        if not isinstance(value, bool):
            raise ValueError(f"paused must be true or false, not {value!r}")
        return value
    raise ValueError(f"unknown limit {name!r}; the limits are {', '.join(LIMIT_FIELDS)}")


def parse_override(changes: object) -> dict[str, Any]:
    """A ``PATCH /job-types/{name}`` body: the fields to set, each checked; a null value
    removes that field's override.

    :raises InvalidQueryError: not an object, an unknown field, or a bad value.
    """
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidQueryError(
            f"send a JSON object with any of {', '.join(LIMIT_FIELDS)} (null removes one)"
        )
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in LIMIT_FIELDS:
            raise InvalidQueryError(
                f"unknown field {name!r}; a type's overrides are {', '.join(LIMIT_FIELDS)}"
            )
        try:
            checked[name] = None if value is None else check(name, value)
        except ValueError as exc:
            raise InvalidQueryError(str(exc)) from None
    return checked


def check_key(key: object) -> str | None:
    """A job's ``concurrency_key``: None, or a string of 1 to 200 characters.

    :raises ValueError: anything else.
    """
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"concurrency_key must be a string of 1 to {MAX_KEY_LENGTH} characters")
    return key


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
