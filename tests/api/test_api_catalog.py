"""Job types, health, the OpenAPI document and API keys."""

from __future__ import annotations

import logging

import httpx
import pytest
from apiserver import ApiFactory

from orchestrator_core import CANCELLABLE_STATES, STARTABLE_STATES, TERMINAL_STATES, TRANSITIONS


def test_job_types_describe_schema_limits_and_plugin(api: httpx.Client) -> None:
    types = {t["name"]: t for t in api.get("/job-types").json()}
    assert set(types) == {"demo.echo", "demo.fail", "demo.sleep"}
    sleep = types["demo.sleep"]
    assert sleep["payload_schema"]["properties"]["seconds"]["minimum"] == 0
    assert sleep["max_attempts"] == 3
    assert sleep["queue"].endswith(".demo.sleep")
    assert sleep["description"]
    assert sleep["plugin"]["name"] == "demo"
    assert sleep["plugin"]["distribution"] == "orchestrator-demo"
    assert sleep["plugin"]["version"] == "0.1.0"
    assert api.get("/job-types/demo.sleep").json() == sleep


def test_an_unknown_job_type_is_404(api: httpx.Client) -> None:
    response = api.get("/job-types/nope.missing")
    assert response.status_code == 404
    assert "demo.echo" in response.json()["detail"]


def test_health_and_readiness(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"redis": "ok", "broker": "ok", "plugin_failures": []}


def test_the_states_are_served_from_the_one_table(api: httpx.Client) -> None:
    served = api.get("/states").json()
    assert served["states"] == [
        "CREATED",
        "RUNNING",
        "RETRYING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]
    assert {s: set(targets) for s, targets in served["transitions"].items()} == {
        s.value: {t.value for t in targets} for s, targets in TRANSITIONS.items()
    }
    assert set(served["terminal"]) == {s.value for s in TERMINAL_STATES}
    assert (
        set(served["startable"]) == {s.value for s in STARTABLE_STATES} == {"CREATED", "RETRYING"}
    )
    assert set(served["cancellable"]) == {s.value for s in CANCELLABLE_STATES}
    assert served["transitions"]["CREATED"] == ["RUNNING", "FAILED", "CANCELLED"]
    assert served["succeeded"] == "COMPLETED"


def test_openapi_documents_every_type_s_payload_as_a_union(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    body = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == {"demo.echo", "demo.fail", "demo.sleep"}
    components = document["components"]["schemas"]
    variant = components["JobCreate_demo_sleep"]
    assert variant["properties"]["type"]["const"] == "demo.sleep"
    payload_ref = variant["properties"]["payload"]["$ref"].rsplit("/", 1)[1]
    assert "seconds" in components[payload_ref]["properties"]
    assert "x-job-create" not in document["paths"]["/jobs"]["post"]


def test_api_keys_guard_jobs_and_types_but_not_health(
    start_api: ApiFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = start_api(api_keys=("k-one", "k-two"))
    with caplog.at_level(logging.DEBUG):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k-one"}):
            routes = (
                ("GET", "/jobs"),
                ("GET", "/job-types"),
                ("GET", "/states"),
                ("POST", "/jobs"),
            )
            for method, path in routes:
                response = client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/healthz").status_code == 200
        good = {"Authorization": "Bearer k-two"}
        assert client.get("/job-types", headers=good).status_code == 200
        submitted = client.post(
            "/jobs", headers=good, json={"type": "demo.echo", "payload": {"message": "x"}}
        )
        assert submitted.status_code == 201
    assert "k-one" not in caplog.text
    assert "k-two" not in caplog.text
