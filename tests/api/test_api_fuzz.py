"""Property-based requests against the real server: whatever is sent, never a 5xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from apiserver import ApiFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
TYPES = st.sampled_from(["demo.echo", "demo.sleep", "demo.fail", "nope", ""]) | st.text(max_size=30)
SUBMISSIONS = (
    st.fixed_dictionaries(
        {"type": TYPES, "payload": JSON},
        optional={"max_attempts": JSON | st.integers(-5, 200)},
    )
    | JSON
)


@pytest.fixture
def roomy_api(start_api: ApiFactory) -> httpx.Client:
    """An API whose body limit leaves room for deep and long bodies."""
    return start_api(max_body_bytes=64 * 1024)


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=SUBMISSIONS, key=st.none() | st.text(min_size=1, max_size=40))
def test_submissions_never_get_a_5xx(api: httpx.Client, body: Any, key: str | None) -> None:
    headers = {"content-type": "application/json"}
    if key is not None and key.isprintable() and key.isascii() and key.strip() == key:
        headers["Idempotency-Key"] = key
    response = api.post("/jobs", content=json.dumps(body).encode(), headers=headers)
    assert response.status_code in {200, 201, 400, 413, 422}, response.text
    assert "detail" in response.json() or response.status_code in {200, 201}


@FUZZ
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/x"]))
def test_raw_bytes_never_get_a_5xx(api: httpx.Client, raw: bytes, content_type: str) -> None:
    response = api.post("/jobs", content=raw, headers={"content-type": content_type})
    assert response.status_code in {400, 413, 415, 422}, response.text


@FUZZ
@given(
    state=st.none() | st.sampled_from(["CREATED", "RUNNING", "nope"]) | st.text(max_size=12),
    job_type=st.none() | st.text(max_size=30),
    limit=st.none() | st.integers(-10, 1000) | st.text(max_size=5),
    cursor=st.none() | st.text(max_size=25),
)
def test_listings_never_get_a_5xx(
    api: httpx.Client, state: str | None, job_type: str | None, limit: object, cursor: str | None
) -> None:
    params = {
        name: value
        for name, value in (
            ("state", state),
            ("type", job_type),
            ("limit", limit),
            ("cursor", cursor),
        )
        if value is not None
    }
    response = api.get("/jobs", params=params)  # type: ignore[arg-type]
    assert response.status_code in {200, 422}, response.text


@FUZZ
@given(job_id=st.text(min_size=1, max_size=60).filter(lambda s: s not in {".", ".."}))
def test_job_ids_never_get_a_5xx(api: httpx.Client, job_id: str) -> None:
    path = f"/jobs/{quote(job_id, safe='')}"
    for response in (api.get(path), api.delete(path)):
        assert response.status_code in {404, 405}, response.text


NESTING = st.text(alphabet='[]{}"\\,:a1 ', max_size=600).map(str.encode) | st.builds(
    lambda depth, inner, opener: opener * depth + inner.encode(),
    st.integers(50, 1500),
    st.text(alphabet='[]{}"\\,:1', max_size=20),
    st.sampled_from([b"[", b"{", b'{"a":', b"[[{"]),
)


@FUZZ
@given(raw=NESTING, path=st.sampled_from(["/jobs", "/jobs/batch"]))
def test_brackets_and_strings_never_get_a_5xx(
    roomy_api: httpx.Client, raw: bytes, path: str
) -> None:
    response = roomy_api.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in {400, 422}, response.text
    assert isinstance(response.json()["detail"], str | list)


@FUZZ
@given(
    digits=st.integers(4200, 6000),
    sign=st.sampled_from(["", "-"]),
    where=st.sampled_from(["max_attempts", "payload", "data", "batch"]),
)
def test_long_numbers_never_get_a_5xx(
    roomy_api: httpx.Client, digits: int, sign: str, where: str
) -> None:
    echo = '"type": "demo.echo", "payload": '
    bodies = {
        "max_attempts": f'{{{echo}{{"message": "x"}}, "max_attempts": N}}',
        "payload": f"{{{echo}N}}",
        "data": f'{{{echo}{{"message": "x", "data": {{"n": [N]}}}}}}',
        "batch": f'{{"jobs": [{{{echo}{{"message": N}}}}]}}',
    }
    body = bodies[where].replace("N", sign + "7" * digits)
    path = "/jobs/batch" if where == "batch" else "/jobs"
    response = roomy_api.post(
        path, content=body.encode(), headers={"content-type": "application/json"}
    )
    expected = {400} if digits > 4300 else {201, 400, 422}
    assert response.status_code in expected, response.text
