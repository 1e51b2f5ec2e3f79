"""The chaos run (``tests/chaos.py``) as part of the suite: a short run whose checker must
find no lost, stuck, doubly finished or illegally moved job."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from chaos import Topology, clean_up, run
from services import require_broker

from orchestrator_core.settings import Settings, load_settings


@pytest.mark.timeout(600)
def test_faults_under_load_lose_nothing(settings: Settings, tmp_path: Path) -> None:
    configured = load_settings(prefix=settings.prefix)
    require_broker(configured.broker_url)
    seed = random.SystemRandom().randrange(10**6)
    print(f"chaos seed {seed} (replay: python -m tests.chaos --seed {seed})")
    try:
        report = run(configured, Topology(), tmp_path, seed=seed, seconds=30.0, rate=100.0)
    finally:
        clean_up(configured)
    print("\n".join(report.lines()))
    assert report.acknowledged > 2000
    assert sum(report.faults.values()) >= 5, report.faults
    assert report.fault_errors == []
    assert report.ok, "\n".join(report.lines())
