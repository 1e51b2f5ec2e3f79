"""When a cron schedule fires: the next fire, the due one, and daylight-saving time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator_core.schedules import Cron, Schedule, ScheduleSpec

BERLIN = "Europe/Berlin"


def at(text: str) -> datetime:
    """A UTC instant from ``2026-03-29 01:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(cron: Cron, start: str, end: str) -> list[datetime]:
    found = []
    for fire in cron.fires_after(at(start)):
        if fire > at(end):
            return found
        found.append(fire)
    return found


def schedule(**fields: Any) -> Schedule:
    defaults: dict[str, Any] = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "type": "demo.echo",
        "payload": {"message": "hi"},
        "created_at": at("2026-01-01 00:00"),
        "armed_at": at("2026-01-01 00:00"),
    }
    return Schedule(**{**defaults, **fields})


# --- The next fire ------------------------------------------------------------------


def test_the_next_fire_is_strictly_after_the_instant() -> None:
    cron = Cron.parse("*/5 * * * *", "UTC")
    assert cron.next_after(at("2026-01-01 12:03:10")) == at("2026-01-01 12:05")
    assert cron.next_after(at("2026-01-01 12:05")) == at("2026-01-01 12:10")
    assert cron.next_after(at("2026-01-01 12:04:59.999999")) == at("2026-01-01 12:05")


def test_fires_are_read_in_the_wall_time_of_the_zone() -> None:
    cron = Cron.parse("0 9 * * MON-FRI", BERLIN)
    # Friday 9:00 in winter is 8:00 UTC; then Monday.
    assert fires(cron, "2026-01-09 00:00", "2026-01-13 00:00") == [
        at("2026-01-09 08:00"),
        at("2026-01-12 08:00"),
    ]
    # In summer 9:00 is 7:00 UTC.
    assert cron.next_after(at("2026-07-01 00:00")) == at("2026-07-01 07:00")
    assert Cron.parse("0 9 * * *", "America/New_York").next_after(at("2026-01-01 00:00")) == at(
        "2026-01-01 14:00"
    )


# --- Daylight-saving time (Europe/Berlin: 29 March and 25 October 2026) -----------------


def test_a_wall_time_the_spring_forward_skips_fires_at_the_next_valid_instant() -> None:
    # 02:00 CET jumps to 03:00 CEST (01:00 UTC): 02:30 does not exist that night.
    cron = Cron.parse("30 2 * * *", BERLIN)
    assert fires(cron, "2026-03-27 12:00", "2026-03-30 12:00") == [
        at("2026-03-28 01:30"),  # 02:30 CET
        at("2026-03-29 01:00"),  # 03:00 CEST, the first instant after the gap
        at("2026-03-30 00:30"),  # 02:30 CEST
    ]
    # Two missing wall times of one night make one fire.
    both = Cron.parse("15,45 2 * * *", BERLIN)
    assert fires(both, "2026-03-29 00:00", "2026-03-29 12:00") == [at("2026-03-29 01:00")]


def test_the_spring_forward_takes_an_hour_out_of_hourly_fires() -> None:
    cron = Cron.parse("0 * * * *", BERLIN)
    assert fires(cron, "2026-03-28 23:30", "2026-03-29 02:30") == [
        at("2026-03-29 00:00"),  # 01:00 CET
        at("2026-03-29 01:00"),  # 03:00 CEST: one hour after the last, as time goes
        at("2026-03-29 02:00"),
    ]


def test_a_fixed_wall_time_in_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    # 03:00 CEST falls back to 02:00 CET (01:00 UTC): 02:30 happens twice.
    cron = Cron.parse("30 2 * * *", BERLIN)
    assert fires(cron, "2026-10-24 12:00", "2026-10-26 12:00") == [
        at("2026-10-25 00:30"),  # 02:30 CEST, the first of the two; 01:30 UTC is not
        at("2026-10-26 01:30"),  # 02:30 CET
    ]
    # Started inside the second pass, it does not fire the first pass's instant again.
    assert cron.next_after(at("2026-10-25 01:15")) == at("2026-10-26 01:30")


def test_wildcard_fires_follow_elapsed_time_through_the_repeated_hour() -> None:
    hourly = Cron.parse("0 * * * *", BERLIN)
    assert fires(hourly, "2026-10-24 23:30", "2026-10-25 02:30") == [
        at("2026-10-25 00:00"),  # 02:00 CEST
        at("2026-10-25 01:00"),  # 02:00 CET
        at("2026-10-25 02:00"),  # 03:00 CET
    ]
    half_hourly = Cron.parse("*/30 * * * *", BERLIN)
    night = fires(half_hourly, "2026-10-24 23:59", "2026-10-25 02:01")
    assert night == [at("2026-10-25 00:00") + timedelta(minutes=30 * n) for n in range(5)]


ZONES = st.sampled_from([BERLIN, "America/New_York", "UTC", "Asia/Kolkata"])
EXPRESSIONS = st.sampled_from(
    [
        "30 2 * * *",
        "0 * * * *",
        "*/20 * * * *",
        "15,45 1-3 * * *",
        "0 2-3 * * *",
        "* 2 * * *",
        "0 0 * * *",
        "7 */2 * * *",
    ]
)
# Around both of Berlin's and New York's changes of 2026.
INSTANTS = st.sampled_from(
    [at("2026-03-08 00:00"), at("2026-03-28 12:00"), at("2026-10-24 12:00"), at("2026-11-01")]
).flatmap(lambda day: st.integers(0, 2 * 86400).map(lambda s: day + timedelta(seconds=s)))


@settings(max_examples=300, deadline=None)
@given(ZONES, EXPRESSIONS, INSTANTS, st.integers(1, 3 * 86400))
def test_every_way_of_asking_agrees_with_the_one_sequence_of_fires(
    timezone: str, expression: str, until: datetime, back: int
) -> None:
    cron = Cron.parse(expression, timezone)
    start = until - timedelta(days=4)
    sequence = fires(cron, start.isoformat()[:19], (until + timedelta(days=2)).isoformat()[:19])
    assert sequence == sorted(set(sequence))
    after = until - timedelta(seconds=back)
    expected = max((fire for fire in sequence if after < fire <= until), default=None)
    assert cron.latest(after=after, until=until) == expected
    assert cron.next_after(until) == min(fire for fire in sequence if fire > until)


# --- The due fire ----------------------------------------------------------------------


def test_the_most_recent_fire_is_due_and_the_missed_ones_before_it_are_not() -> None:
    cron = Cron.parse("* * * * *", "UTC")
    assert cron.latest(after=at("2026-01-01 10:00"), until=at("2026-01-01 12:34:56")) == at(
        "2026-01-01 12:34"
    )
    assert cron.latest(after=at("2026-01-01 12:34"), until=at("2026-01-01 12:34:59")) is None
    # At the very instant of a fire, that fire is due.
    assert cron.latest(after=at("2026-01-01 12:34"), until=at("2026-01-01 12:35")) == at(
        "2026-01-01 12:35"
    )
    # After a month down, a monthly fire far back is still found.
    monthly = Cron.parse("0 0 1 * *", "UTC")
    assert monthly.latest(after=at("2025-11-15"), until=at("2026-01-31")) == at("2026-01-01")
    leap_day = Cron.parse("0 0 29 2 *", "UTC")
    assert leap_day.latest(after=at("2020-01-01"), until=at("2027-06-01")) == at("2024-02-29")


def test_a_schedule_is_due_once_per_fire_after_it_was_armed() -> None:
    nightly = schedule(armed_at=at("2026-01-10 12:00"))
    # Created at noon: the 03:00 of that morning is not its fire.
    assert nightly.due_fire(at("2026-01-10 23:00")) is None
    assert nightly.next_run_at(at("2026-01-10 23:00")) == at("2026-01-11 03:00")
    assert nightly.due_fire(at("2026-01-11 03:00:00.5")) == at("2026-01-11 03:00")
    fired = nightly.model_copy(update={"last_run_at": at("2026-01-11 03:00")})
    assert fired.due_fire(at("2026-01-11 09:00")) is None
    # Down for three nights: only the last of them runs.
    assert fired.due_fire(at("2026-01-14 08:00")) == at("2026-01-14 03:00")
    # A fire due but not made yet is the next run.
    assert fired.next_run_at(at("2026-01-14 08:00")) == at("2026-01-14 03:00")


def test_a_paused_schedule_is_never_due() -> None:
    paused = schedule(enabled=False)
    assert paused.due_fire(at("2026-02-01")) is None
    assert paused.next_run_at(at("2026-02-01")) is None


def test_resuming_after_the_last_fire_skips_the_fires_of_the_pause() -> None:
    resumed = schedule(last_run_at=at("2026-01-02 03:00"), armed_at=at("2026-01-20 12:00"))
    assert resumed.due_fire(at("2026-01-20 13:00")) is None
    assert resumed.due_fire(at("2026-01-21 03:00")) == at("2026-01-21 03:00")


# --- What a schedule may be ---------------------------------------------------------


def spec(**fields: Any) -> ScheduleSpec:
    defaults: dict[str, Any] = {"name": "a", "cron": "* * * * *", "type": "x", "payload": {}}
    return ScheduleSpec(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "* * * *"}, "a cron expression has 5 fields"),
        ({"cron": "0 * * * * *"}, "not 6"),
        ({"cron": "61 * * * *"}, "bad minute"),
        ({"cron": "0 25 * * *"}, "bad hour"),
        ({"cron": "0 0 31 2 *"}, "bad day-of-month"),
        ({"cron": "@daily"}, "5 fields"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "localtime"}, "unknown time zone"),
        ({"timezone": "europe/berlin"}, "unknown time zone"),
        ({"name": "Nightly"}, "should match pattern"),
        ({"name": "-nightly"}, "should match pattern"),
        ({"name": "night/ly"}, "should match pattern"),
        ({"name": "n" * 201}, "at most 200 characters"),
        ({"priority": 10}, "less than or equal to 9"),
        ({"priority": "1"}, "valid integer"),
        ({"concurrency_key": ""}, "at least 1 character"),
        ({"concurrency_key": "k" * 201}, "at most 200 characters"),
    ],
)
def test_a_bad_field_is_refused_saying_why(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    assert message in str(caught.value)
    assert caught.value.errors()[0]["loc"] == (next(iter(fields)),)


def test_a_good_spec_is_kept_with_its_expression_tidied() -> None:
    kept = spec(name="0.nightly_db-backup", cron=" 0  3 * *  mon ", timezone=BERLIN, priority=9)
    assert kept.cron == "0 3 * * mon"
    assert kept.rule.next_after(at("2026-01-01")) == at("2026-01-05 02:00")
