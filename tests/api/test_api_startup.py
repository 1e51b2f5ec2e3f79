"""What the API says about Redis as it starts: an evicting Redis silently loses jobs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from apiserver import served
from redisserver import private_redis

from api.main import create_app
from orchestrator_core import Settings, load_settings


def started(settings: Settings, caplog: pytest.LogCaptureFixture, **overrides: str) -> list[str]:
    """The WARNING lines the store logged while an API with ``overrides`` started."""
    configured = load_settings(**{**settings.model_dump(), **overrides})
    with caplog.at_level(logging.WARNING), served(create_app(configured)):
        pass
    return [r.getMessage() for r in caplog.records if r.name == "orchestrator_core.store.jobs"]


def test_the_api_warns_at_start_up_when_redis_may_evict_jobs(
    api_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with private_redis(tmp_path, "--maxmemory-policy", "volatile-lru") as url:
        [warning] = started(api_settings, caplog, redis_url=url)
    assert "maxmemory-policy is 'volatile-lru'" in warning
    assert "set it to 'noeviction'" in warning


def test_the_api_says_nothing_of_a_redis_that_never_evicts(
    api_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with private_redis(tmp_path, "--maxmemory-policy", "noeviction") as url:
        assert started(api_settings, caplog, redis_url=url) == []


def test_the_api_starts_when_redis_is_down_and_says_so(
    api_settings: Settings, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    [warning] = started(api_settings, caplog, redis_url=f"redis://127.0.0.1:{closed_port}/0")
    assert warning.startswith("could not tell whether Redis evicts keys: ")
