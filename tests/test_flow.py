"""The flow-control values (``orchestrator_core/flow.py``): what an override may say."""

from __future__ import annotations

import pytest

from orchestrator_core.exceptions import InvalidQueryError
from orchestrator_core.flow import LIMIT_FIELDS, Limits, Rate, check_key, parse_override


@pytest.mark.parametrize(
    ("text", "count", "period", "interval"),
    [("20/s", 20, 1.0, 50.0), ("100/m", 100, 60.0, 600.0), ("5/h", 5, 3600.0, 720_000.0)],
)
def test_rates_parse_into_an_even_spacing(
    text: str, count: int, period: float, interval: float
) -> None:
    rate = Rate.parse(text)
    assert (rate.count, rate.period, rate.interval_ms, str(rate)) == (
        count,
        period,
        interval,
        text,
    )


@pytest.mark.parametrize("text", ["", "20", "/s", "20/d", "0/s", "-1/s", "1.5/s", "100001/s"])
def test_a_bad_rate_says_what_a_rate_looks_like(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(text)


def test_an_override_is_checked_field_by_field() -> None:
    assert parse_override({"concurrency": 2, "rate_limit": "3/m", "paused": True}) == {
        "concurrency": 2,
        "rate_limit": "3/m",
        "paused": True,
    }
    assert parse_override({"concurrency": None}) == {"concurrency": None}
    for bad in (
        {},
        [],
        {"colour": 1},
        {"concurrency": 0},
        {"priority": 10},
        {"paused": "yes"},
        {"rate_limit": "fast"},
    ):
        with pytest.raises(InvalidQueryError):
            parse_override(bad)


def test_overrides_put_over_a_types_own_limits() -> None:
    own = Limits(priority=2, concurrency=5)
    effective = own.with_overrides({"concurrency": 1, "paused": True})
    assert effective.as_dict() == {
        "priority": 2,
        "concurrency": 1,
        "concurrency_per_key": None,
        "rate_limit": None,
        "rate_limit_per_key": None,
        "paused": True,
    }
    assert set(effective.as_dict()) == set(LIMIT_FIELDS)


def test_a_concurrency_key_is_one_to_two_hundred_characters() -> None:
    assert check_key(None) is None
    assert check_key("k" * 200) == "k" * 200
    for bad in ("", "k" * 201, 3):
        with pytest.raises(ValueError, match="concurrency_key"):
            check_key(bad)
