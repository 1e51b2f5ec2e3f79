"""The cron schedules in Redis: one JSON record per name in the hash ``Keys.schedules``.

Every write is atomic in Redis: a create is an ``HSETNX``; a change is a compare-and-set
(a short script replaces the record only if it is still the one the change was made
from, else the change is made again from what is there now), so two operators, or an
operator and the schedulers recording fires, never lose each other's writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import redis
from pydantic import ValidationError

from orchestrator_core.exceptions import (
    OrchestratorError,
    ScheduleExistsError,
    ScheduleNotFoundError,
)
from orchestrator_core.models import from_micros
from orchestrator_core.schedules import Schedule
from orchestrator_core.store.connection import redis_errors
from orchestrator_core.store.keys import Keys

logger = logging.getLogger(__name__)

MAX_TRIES = 100
"""Compare-and-set rounds before a change gives up; each lost round means another write
landed in between, so this many in a row only happens under a storm of writes."""

_REPLACE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return -1 end
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
"""Replace the record ARGV[1] by ARGV[3] if it is still ARGV[2]: 1 done, 0 it changed
meanwhile, -1 it is gone."""


class ScheduleStore:
    """Create, read, change and delete schedules, and record their fires.

    :param client: a client made by ``connect_redis`` (replies decoded or not).
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._replace = client.register_script(_REPLACE)

    def now(self) -> datetime:
        """Redis's clock, which every scheduler and API process shares."""
        with redis_errors("reading the clock"):
            seconds, micros = self.redis.time()
        return from_micros(int(seconds) * 1_000_000 + int(micros))

    def create(self, schedule: Schedule) -> Schedule:
        """Store a new schedule.

        :raises ScheduleExistsError: the name is taken (nothing is changed).
        """
        with redis_errors(f"creating schedule {schedule.name}"):
            added = self.redis.hsetnx(self.keys.schedules, schedule.name, _encode(schedule))
        if not added:
            raise ScheduleExistsError(schedule.name)
        return schedule

    def get(self, name: str) -> Schedule:
        """:raises ScheduleNotFoundError: no such schedule (or its record is unreadable)."""
        with redis_errors(f"reading schedule {name}"):
            raw = self.redis.hget(self.keys.schedules, name)
        schedule = None if raw is None else _decode(name, raw)
        if schedule is None:
            raise ScheduleNotFoundError(name)
        return schedule

    def list(self) -> list[Schedule]:
        """Every schedule, by name; a record that cannot be read is logged and left out."""
        with redis_errors("listing the schedules"):
            records = self.redis.hgetall(self.keys.schedules)
        found = (_decode(_text(name), raw) for name, raw in records.items())
        return sorted((s for s in found if s is not None), key=lambda s: s.name)

    def update(self, name: str, change: Callable[[Schedule], Schedule]) -> Schedule:
        """Replace schedule ``name`` by ``change(current)``, atomically: if another write
        lands in between, ``change`` is called again with the record as it is then.

        :raises ScheduleNotFoundError: no such schedule.
        :raises Exception: whatever ``change`` raises (nothing is written then).
        """
        for _ in range(MAX_TRIES):
            with redis_errors(f"reading schedule {name}"):
                raw = self.redis.hget(self.keys.schedules, name)
            current = None if raw is None else _decode(name, raw)
            if raw is None or current is None:
                raise ScheduleNotFoundError(name)
            changed = change(current)
            if changed.name != name:
                raise ValueError(f"a change of schedule {name!r} cannot rename it")
            if changed == current:
                return current
            with redis_errors(f"changing schedule {name}"):
                done = self._replace(
                    keys=[self.keys.schedules], args=[name, _text(raw), _encode(changed)]
                )
            if done == 1:
                return changed
            if done == -1:
                raise ScheduleNotFoundError(name)
        raise OrchestratorError(f"schedule {name!r} changed {MAX_TRIES} times during one update")

    def delete(self, name: str) -> None:
        """:raises ScheduleNotFoundError: no such schedule."""
        with redis_errors(f"deleting schedule {name}"):
            removed = self.redis.hdel(self.keys.schedules, name)
        if not removed:
            raise ScheduleNotFoundError(name)

    def record_fire(self, name: str, fire_at: datetime, job_id: str) -> Schedule | None:
        """Record that the fire at ``fire_at`` made job ``job_id``; a fire no later than the
        one already recorded changes nothing. Returns the schedule, or None if it is gone."""

        def forward(schedule: Schedule) -> Schedule:
            if schedule.last_run_at is not None and schedule.last_run_at >= fire_at:
                return schedule
            return schedule.model_copy(update={"last_run_at": fire_at, "last_job_id": job_id})

        try:
            return self.update(name, forward)
        except ScheduleNotFoundError:
            return None


def _encode(schedule: Schedule) -> str:
    return schedule.model_dump_json()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(name: str, raw: str | bytes) -> Schedule | None:
    try:
        return Schedule.model_validate_json(raw)
    except ValidationError as exc:
        logger.error("schedule %r has an unreadable record, left alone: %s", name, exc)
        return None
