"""The plugin's registration: one job type, found through the installed distribution."""

from __future__ import annotations

import inspect

from orchestrator_container import ContainerRunPayload
from orchestrator_container.plugin import register_job_types
from orchestrator_container.runner import run_container

from orchestrator_core.testing import check_distribution

DISTRIBUTION = "orchestrator-container"


def test_registers_container_run_with_two_attempts_and_no_timeout() -> None:
    (job_type,) = register_job_types()
    assert job_type.name == "container.run"
    assert job_type.payload is ContainerRunPayload
    assert job_type.execute is run_container
    assert (job_type.max_attempts, job_type.timeout) == (2, None)
    assert not job_type.is_async
    assert job_type.description
    assert job_type.description == inspect.getdoc(run_container)


def test_the_distribution_registers_container_run_of_its_plugin_module() -> None:
    found = {job_type.name: job_type.execute for job_type in check_distribution(DISTRIBUTION)}
    assert found == {"container.run": run_container}
