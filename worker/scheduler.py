"""The scheduler: every worker runs one, and together they fire the due cron schedules.

Each fire creates exactly one job, however many schedulers see it due and whichever of
them dies half-way: the job is submitted under the idempotency key
``schedule:<name>:<fire instant>``, so every scheduler that fires the same instant gets
the same job back, and only then is the fire recorded on the schedule. A scheduler
killed between the two leaves the fire due, and the next one to look (itself after a
restart, or any other) gets that job and records it. The schedules' own rules (which
fire is due, daylight-saving time) are in ``orchestrator_core/schedules.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from orchestrator_core import Plugins
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.exceptions import (
    BrokerUnavailableError,
    IdempotencyConflictError,
    SealedPayloadError,
    StoreUnavailableError,
    UnknownJobTypeError,
)
from orchestrator_core.models import format_instant
from orchestrator_core.schedules import Schedule
from orchestrator_core.store.schedules import ScheduleStore

logger = logging.getLogger(__name__)

SHORTEST_PAUSE = 0.01
"""Seconds the loop sleeps at least, so a clock a little behind Redis's never spins it."""


def idempotency_key(name: str, fire: datetime) -> str:
    """What the job of schedule ``name``'s fire at ``fire`` is submitted under."""
    return f"schedule:{name}:{format_instant(fire)}"


class Scheduler:
    """Fires the due schedules of ``schedules`` through ``submitter``.

    :param plugins: the job types this process knows; a schedule of another type is
        left to a worker that has it.
    :param interval: the longest pause between two looks at the schedules.
    :param now: the clock (default: Redis's, shared by every process).
    """

    def __init__(
        self,
        schedules: ScheduleStore,
        submitter: Submitter,
        plugins: Plugins,
        *,
        interval: float = 1.0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.schedules = schedules
        self.submitter = submitter
        self.plugins = plugins
        self.interval = interval
        self._now = now or schedules.now
        self._skipped: dict[str, datetime] = {}
        """Per schedule, the fire last skipped here (so it is logged once)."""
        self._upcoming_in: float | None = None
        """Seconds from the last look to the soonest fire after it, of any schedule."""

    def fire_due(self) -> int:
        """Fire every due schedule once; returns how many jobs this call created (a fire
        that another scheduler made first counts for that one)."""
        now = self._now()
        created = 0
        upcoming: list[datetime] = []
        listed = self.schedules.list()
        for schedule in listed:
            fire = schedule.due_fire(now)
            if fire is not None and self._fire(schedule, fire):
                created += 1
            following = schedule.rule.next_after(now) if schedule.enabled else None
            if following is not None:
                upcoming.append(following)
        names = {schedule.name for schedule in listed}
        self._skipped = {name: at for name, at in self._skipped.items() if name in names}
        soonest = min(upcoming, default=None)
        self._upcoming_in = None if soonest is None else (soonest - now).total_seconds()
        return created

    def run(self, stop: threading.Event) -> None:
        """Fire due schedules until ``stop``: again at the soonest next fire, or after
        ``interval`` seconds if that comes first. Redis or the broker being away is
        logged, and the next round tries again."""
        while not stop.is_set():
            pause = self.interval
            started = time.monotonic()
            try:
                self.fire_due()
                if self._upcoming_in is not None:
                    wait = self._upcoming_in - (time.monotonic() - started)
                    pause = min(self.interval, max(SHORTEST_PAUSE, wait))
            except (StoreUnavailableError, BrokerUnavailableError):
                logger.warning(
                    "firing schedules failed; trying again in %.1f s", pause, exc_info=True
                )
            except Exception:
                logger.exception(
                    "firing schedules failed unexpectedly; trying again in %.1f s", pause
                )
            stop.wait(pause)

    def _fire(self, schedule: Schedule, fire: datetime) -> bool:
        """Make the job of ``fire`` (or get the one another scheduler made) and record it;
        True when this call created it. Anything but Redis or the broker being away that
        stops it is logged once per fire, and the other schedules carry on."""
        try:
            made = self._job(schedule, fire)
        except (StoreUnavailableError, BrokerUnavailableError):
            raise
        except Exception as exc:
            self._skip(schedule, fire, f"{type(exc).__name__}: {exc}", error=exc)
            return False
        if made is None:
            return False
        job_id, created = made
        self.schedules.record_fire(schedule.name, fire, job_id)
        self._skipped.pop(schedule.name, None)
        if created:
            logger.info(
                "schedule %s fired for %s: job %s", schedule.name, format_instant(fire), job_id
            )
        return created

    def _job(self, schedule: Schedule, fire: datetime) -> tuple[str, bool] | None:
        """The id of the fire's job and whether this call created it; None (logged once
        per fire) when this process cannot make it: the type is not installed here, the
        payload no longer validates, or its secret fields cannot be opened here."""
        try:
            job_type = self.plugins.get(schedule.type).job_type
            data = schedule.payload
            if schedule.sealed is not None:
                data = self.submitter.sealer.unseal(schedule.sealed, job_id=schedule.name)
            payload = job_type.validate_payload(data)
        except UnknownJobTypeError as exc:
            self._skip(schedule, fire, f"{exc}; a worker that has it will fire it")
            return None
        except ValidationError as exc:
            self._skip(schedule, fire, f"its payload no longer validates: {exc}")
            return None
        except SealedPayloadError as exc:
            self._skip(schedule, fire, f"its secret payload fields cannot be opened: {exc}")
            return None
        job = self.submitter.new_job(
            job_type,
            payload,
            priority=schedule.priority,
            concurrency_key=schedule.concurrency_key,
            schedule=schedule.name,
        )
        try:
            submitted = self.submitter.submit(
                [job], idempotency_key=idempotency_key(schedule.name, fire)
            )
        except IdempotencyConflictError as exc:
            # Made already, from the schedule as it was before an edit: that job stands.
            return exc.job_id, False
        return submitted.jobs[0].id, submitted.created

    def _skip(
        self, schedule: Schedule, fire: datetime, reason: str, *, error: Exception | None = None
    ) -> None:
        """Log, once per fire, why this process did not fire it; it stays due, for another
        process (or for this one once the cause is gone)."""
        if self._skipped.get(schedule.name) == fire:
            return
        self._skipped[schedule.name] = fire
        logger.warning(
            "schedule %s: not fired for %s here: %s",
            schedule.name,
            format_instant(fire),
            reason,
            exc_info=error,
        )
