"""Cron schedules: the record of one, and the instants at which it fires.

A schedule names a job type, a payload and a standard five-field cron expression
(minute, hour, day of month, month, day of week) read in an IANA time zone. Each fire
creates one job (``worker/scheduler.py``); the record keeps when it last fired and
which job that made.

When it fires. Fires are computed by cronsim in the wall time of the schedule's zone,
then compared and stored as UTC instants. Across daylight-saving changes:

- Spring forward: a wall time that does not exist that night (``30 2 * * *`` in
  Europe/Berlin, where 02:00 jumps to 03:00) fires at the next valid instant, 03:00
  local time, so the day still has its fire. Several missing wall times of one night
  (``15,45 2 * * *``) become that one fire.
- Fall back: an expression whose minute and hour fields are both fixed (neither starts
  with ``*``: ``30 2 * * *``, ``0 9-17 * * *``) fires once in the repeated hour, at the
  first of its two occurrences (the earlier UTC instant, still on summer time). An
  expression with ``*`` or ``*/n`` in its minute or hour field follows elapsed time, as
  Debian's cron does: ``*/15 * * * *`` fires every 15 minutes through both passes of
  the repeated hour, and ``0 * * * *`` at both 02:00s.

Which fire runs. A schedule is due when a fire has come (at or before now) after the
later of ``last_run_at`` and ``armed_at`` (its creation, or the last time it was
resumed or its timing changed). Only the most recent such fire runs: after an outage
the fires missed in between are skipped, and so are those of a pause.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrator_core.models import Timestamp

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
"""What a schedule's name looks like; it is part of the URL of the schedule."""
MAX_NAME_LENGTH = 200
MAX_KEY_LENGTH = 200
"""The longest ``concurrency_key``, as for a submission."""
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")

_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
"""Files of the zone database that name no IANA zone: the machine's own setting, and
placeholders."""

_WINDOWS = tuple(
    timedelta(**span)
    for span in ({"minutes": 2}, {"hours": 1}, {"days": 1}, {"days": 32}, {"days": 367})
)
"""How far back :meth:`Cron.latest` looks first: a fire that is due is found by walking
the fires of a short span before now, never every fire since a long outage began."""


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def zone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name`` (``UTC``, ``Europe/Berlin``).

    :raises ValueError: no such zone, saying how one is written.
    """
    if name not in _zones():
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        )
    return ZoneInfo(name)


def check_cron(expression: str) -> str:
    """``expression`` with its fields separated by single spaces, once it is known to be a
    five-field cron expression that fires at least once.

    :raises ValueError: saying which field is wrong, or that it never fires.
    """
    fields = expression.split()
    if len(fields) != len(FIELDS):
        raise ValueError(
            f"a cron expression has {len(FIELDS)} fields ({' '.join(FIELDS)}), "
            f"not {len(fields)}: {expression!r}"
        )
    text = " ".join(fields)
    try:
        first = next(CronSim(text, datetime.now(UTC)), None)
    except CronSimError as exc:
        raise ValueError(f"bad cron expression {text!r}: {str(exc).lower()}") from None
    if first is None:
        raise ValueError(f"the cron expression {text!r} never fires")
    return text


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron expression read in a time zone: the instants (UTC) at which it fires."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Cron:
        """:raises ValueError: a bad expression or an unknown zone."""
        return cls(check_cron(expression), zone(timezone))

    def fires_after(self, instant: datetime) -> Iterator[datetime]:
        """The fires strictly after ``instant`` (aware), earliest first, as UTC instants."""
        # In the repeated hour of a fall-back, cronsim (walking wall time) may give a fire
        # of the first pass again when started in the second: each fire comes out once.
        last = instant
        for fire in CronSim(self.expression, instant.astimezone(self.zone)):
            at = fire.astimezone(UTC)
            if at > last:
                last = at
                yield at

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire strictly after ``instant``; None if it never fires again."""
        return next(self.fires_after(instant), None)

    def latest(self, *, after: datetime, until: datetime) -> datetime | None:
        """The most recent fire at or before ``until`` that is strictly after ``after``."""
        for window in (*_WINDOWS, None):
            start = after if window is None else max(after, until - window)
            found = None
            for fire in self.fires_after(start):
                if fire > until:
                    break
                found = fire
            if found is not None or start == after:
                return found
        return None


Name = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=f"^{NAME_PATTERN.pattern}$")
]
CronText = Annotated[str, AfterValidator(check_cron)]
"""A standard 5-field cron expression, checked."""
ZoneName = Annotated[str, AfterValidator(lambda name: zone(name).key)]
"""An IANA time zone name that resolves here."""
Priority = Annotated[int, Field(ge=0, le=9, strict=True)]
ConcurrencyKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]


class ScheduleSpec(BaseModel):
    """What an operator says about a schedule: everything but its state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    cron: CronText
    timezone: ZoneName = "UTC"
    type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]
    priority: Priority | None = None
    """Overrides the type's priority for the jobs it makes."""
    concurrency_key: ConcurrencyKey | None = None
    enabled: bool = True

    @functools.cached_property
    def rule(self) -> Cron:
        """The expression in its zone."""
        return Cron(self.cron, zone(self.timezone))


class Schedule(ScheduleSpec):
    """A stored schedule: its spec and its state."""

    created_at: Timestamp
    armed_at: Timestamp
    """Fires at or before this never run: the creation, or the last time the schedule was
    resumed or its cron or time zone changed."""
    last_run_at: Timestamp | None = None
    """The fire that last made a job (the instant it was due, not when the job ran)."""
    last_job_id: str | None = None
    sealed: str | None = None
    """For a type with secret fields, the sealed copy of the payload with their real values
    (``payload`` holds them masked); never shown."""

    @property
    def baseline(self) -> datetime:
        """Fires at or before this one have run, or never will."""
        if self.last_run_at is None:
            return self.armed_at
        return max(self.armed_at, self.last_run_at)

    def due_fire(self, now: datetime) -> datetime | None:
        """The fire that should run now: the most recent one at or before ``now`` after
        :attr:`baseline`; None when disabled or when none is due."""
        if not self.enabled:
            return None
        upcoming = self.rule.next_after(self.baseline)
        if upcoming is None or upcoming > now:
            return None
        return self.rule.latest(after=self.baseline, until=now)

    def next_run_at(self, now: datetime) -> datetime | None:
        """When it fires next: a due fire not made yet, else the first fire after ``now``;
        None when disabled or when it never fires again."""
        if not self.enabled:
            return None
        due = self.due_fire(now)
        return due if due is not None else self.rule.next_after(max(now, self.baseline))
