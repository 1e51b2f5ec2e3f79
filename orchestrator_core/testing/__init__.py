"""The plugin author's testing kit: run a job type in-process, as a worker would, and assert.

Installed with the orchestrator as a pytest plugin (entry point ``pytest11``), so any
project that has the orchestrator installed gets the :func:`job_runner` fixture and
can import the rest from here. Nothing here needs Redis or RabbitMQ::

    from orchestrator_core.testing import JobRunner, check_distribution

    def test_count(job_runner: JobRunner) -> None:
        [count] = check_distribution("acme-jobs")
        job_runner.run(count, {"to": 3}).assert_completed(result={"counted": 3})

A run goes through the same :func:`~orchestrator_core.attempt.perform` and
:func:`~orchestrator_core.attempt.settle` the worker runs every attempt through, so the
state a test sees is the state the worker would store. To act while ``execute`` runs
(cancel it once it has done something, say), start the run and wait for it later::

    def test_cancel_once_started(job_runner: JobRunner) -> None:
        running = job_runner.start(count, {"to": 1000})
        wait_until_it_has_begun()
        running.cancel()
        running.result().assert_cancelled()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

import pytest
from pydantic import BaseModel

from orchestrator_core.job_type import JobType
from orchestrator_core.testing.distribution import check_distribution
from orchestrator_core.testing.execution import RunningJob, RunOptions, run_job, start_job
from orchestrator_core.testing.result import JobRun

__all__ = [
    "JobRun",
    "JobRunner",
    "RunOptions",
    "RunningJob",
    "check_distribution",
    "job_runner",
    "run_job",
    "start_job",
]


class JobRunner:
    """What the :func:`job_runner` fixture returns: runs job types and keeps the runs."""

    def __init__(self) -> None:
        self._started: list[RunningJob] = []

    def run(
        self,
        job_type: JobType,
        payload: Mapping[str, Any] | BaseModel,
        **options: Unpack[RunOptions],
    ) -> JobRun:
        """Run one attempt; the same arguments and result as :func:`run_job`."""
        return self.start(job_type, payload, **options).result()

    def start(
        self,
        job_type: JobType,
        payload: Mapping[str, Any] | BaseModel,
        **options: Unpack[RunOptions],
    ) -> RunningJob:
        """Start one attempt; the same arguments and result as :func:`start_job`. Its run
        joins :attr:`runs` once :meth:`RunningJob.result` has it."""
        running = start_job(job_type, payload, **options)
        self._started.append(running)
        return running

    @property
    def runs(self) -> list[JobRun]:
        """Every run made through :meth:`run`, or started through :meth:`start` and
        waited for, in the order they were started."""
        return [r.result() for r in self._started if r.finished]


@pytest.fixture
def job_runner() -> JobRunner:
    """A :class:`JobRunner`: ``job_runner.run(job_type, payload, ...)`` runs one attempt
    in-process (no Redis, no broker) and returns a :class:`JobRun` to assert on."""
    return JobRunner()
