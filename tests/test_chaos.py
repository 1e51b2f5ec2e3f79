"""The chaos run (``tests/chaos.py``) as part of the suite: on Redis under Sentinel and a
three-node RabbitMQ cluster, a short run whose faults include a Redis failover and a
broker node stopped, and whose checker must find no lost, stuck, doubly finished or
illegally moved job."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from chaos import replicated, run

from orchestrator_core.settings import Settings, load_settings


@pytest.mark.timeout(900)
def test_faults_under_load_lose_nothing(settings: Settings, tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(10**6)
    print(f"chaos seed {seed} (replay: python -m tests.chaos --replicated --seed {seed})")
    with replicated(tmp_path, seed=seed) as (topology, reach):
        configured = load_settings(prefix=settings.prefix, **reach)
        report = run(configured, topology, tmp_path, seed=seed, seconds=40.0, rate=100.0)
    print("\n".join(report.lines()))
    assert report.acknowledged >= 3500
    # The failovers come first; then as many of the processes' faults as the time allows.
    assert {"fail the Redis primary over", "stop a RabbitMQ node"} <= set(report.faults)
    assert sum(report.faults.values()) >= 4, report.faults
    assert report.fault_errors == []
    assert report.ok, "\n".join(report.lines())
