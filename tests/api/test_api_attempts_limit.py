"""A type's ``max_attempts_limit`` over real HTTP: ``shell.run`` allows one attempt per job."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from apiserver import ApiFactory
from cleanup import delete_broker_objects, job_queues

from orchestrator_core import Settings, load_plugins
from orchestrator_core.store import JobStore

SHELL = {"type": "shell.run", "payload": {"argv": ["true"]}}
ECHO = {"type": "demo.echo", "payload": {"message": "hello"}}
LIMIT_MESSAGE = "max_attempts may be at most 1 for shell.run (its max_attempts_limit)"


@pytest.fixture
def api(start_api: ApiFactory, api_settings: Settings) -> Iterator[httpx.Client]:
    """An API offering the demo types and ``shell.run``; the shell queue is removed after
    (the fixtures remove the demo's)."""
    yield start_api(plugins="demo,shell")
    shell = job_queues(api_settings.prefix, load_plugins(allow=["shell"]))
    delete_broker_objects(api_settings.broker_url, api_settings.prefix, shell)


def test_asking_shell_run_for_more_attempts_than_its_limit_is_a_422(
    api: httpx.Client, jobs_store: JobStore
) -> None:
    for asked in (100, 2):
        response = api.post("/jobs", json={**SHELL, "max_attempts": asked})

        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "max_attempts"]
        assert error["type"] == "max_attempts_limit"
        assert LIMIT_MESSAGE in error["msg"]
    assert jobs_store.list_jobs().items == ()


def test_within_the_limit_or_without_asking_a_shell_job_gets_one_attempt(
    api: httpx.Client,
) -> None:
    asked = api.post("/jobs", json={**SHELL, "max_attempts": 1})
    default = api.post("/jobs", json=SHELL)

    assert (asked.status_code, default.status_code) == (201, 201)
    assert asked.json()["max_attempts"] == default.json()["max_attempts"] == 1


def test_a_batch_item_over_the_limit_is_named_by_its_index(
    api: httpx.Client, jobs_store: JobStore
) -> None:
    jobs = [ECHO, SHELL, {**SHELL, "max_attempts": 100}, {**ECHO, "max_attempts": 100}]

    response = api.post("/jobs/batch", json={"jobs": jobs})

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "jobs", 2, "max_attempts"]
    assert LIMIT_MESSAGE in error["msg"]
    assert jobs_store.list_jobs().items == ()


def test_the_catalog_shows_each_types_limit(api: httpx.Client) -> None:
    types = {t["name"]: t for t in api.get("/job-types").json()}

    assert (types["shell.run"]["max_attempts"], types["shell.run"]["max_attempts_limit"]) == (1, 1)
    # A type without a limit of its own may be asked for up to the API's cap.
    assert types["demo.echo"]["max_attempts_limit"] == 100
    assert api.get("/job-types/shell.run").json() == types["shell.run"]


def test_the_openapi_schema_of_a_shell_submission_shows_the_limit(api: httpx.Client) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]

    options = schemas["JobCreate_shell_run"]["properties"]["max_attempts"]["anyOf"]

    assert {"type": "integer", "minimum": 1, "maximum": 1} in options
