"""What both clients send for each operation, and how they read the answers, as plain values
(requests are built, never sent)."""

from __future__ import annotations

import json

import httpx
import pytest

from orchestrator_client import ApiError, requests, responses
from orchestrator_client.endpoint import Endpoint
from orchestrator_core.exceptions import ConfigurationError

URL = "http://api.test:8000"

VALIDATION = [
    {"loc": ["body", "payload", "seconds"], "msg": "Input should be\n>= 0", "type": "x"},
    {"loc": ["body", "payload", "extra"], "msg": "Extra inputs are not permitted", "type": "y"},
]


def built(
    call: requests.Call[object] | requests.StreamCall, *, key: str | None = "k1"
) -> httpx.Request:
    api = Endpoint(f"{URL}/", api_key=key)
    with httpx.Client(**api.http_options) as http:
        if isinstance(call, requests.StreamCall):
            return api.stream_request(http, call)
        return api.request(http, call)


def test_a_submission_carries_its_options_and_the_key() -> None:
    call = requests.submit("demo.echo", {"m": 1}, max_attempts=2, idempotency_key="key-1")
    request = built(call)
    assert (request.method, str(request.url)) == ("POST", f"{URL}/jobs")
    assert json.loads(request.content) == {
        "type": "demo.echo",
        "payload": {"m": 1},
        "max_attempts": 2,
    }
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["Authorization"] == "Bearer k1"
    assert request.headers["Accept"] == "application/json"
    plain = built(
        requests.submit("demo.echo", {}, max_attempts=None, idempotency_key=None), key=None
    )
    assert json.loads(plain.content) == {"type": "demo.echo", "payload": {}}
    assert "Idempotency-Key" not in plain.headers
    assert "Authorization" not in plain.headers


def test_ids_are_quoted_whole_and_listing_sends_only_the_filters_given() -> None:
    assert built(requests.get_job("a/b?c")).url.raw_path == b"/jobs/a%2Fb%3Fc"
    cancel = built(requests.cancel_job("j 1"))
    assert (cancel.method, cancel.url.raw_path, cancel.content) == ("DELETE", b"/jobs/j%201", b"")
    listing = built(requests.list_jobs(state=None, type="demo.echo", limit=2, cursor=None))
    assert dict(listing.url.params) == {"limit": "2", "type": "demo.echo"}
    paged = built(requests.list_jobs(state="RUNNING", type=None, limit=50, cursor="c1"))
    assert dict(paged.url.params) == {"limit": "50", "state": "RUNNING", "cursor": "c1"}


def test_streams_ask_for_events_from_where_the_reader_is() -> None:
    one = built(requests.job_events("j/1", position=3, read_timeout=1.5))
    assert one.url.raw_path == b"/jobs/j%2F1/events?progress=true"
    assert (one.headers["Last-Event-ID"], one.headers["Accept"]) == ("3", "text/event-stream")
    assert one.extensions["timeout"] == {"connect": 5.0, "read": 1.5, "write": 30.0, "pool": 30.0}
    every = built(requests.events(type="demo.echo", state="", last_event_id=None))
    assert (every.url.raw_path, every.headers.get("Last-Event-ID")) == (
        b"/events?type=demo.echo",
        None,
    )
    resumed = built(requests.events(type=None, state="FAILED", last_event_id="1-0"))
    assert dict(resumed.url.params) == {"state": "FAILED"}
    assert resumed.headers["Last-Event-ID"] == "1-0"


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://api.test", "http://[::1", ""])
def test_a_base_url_that_is_not_http_is_a_settings_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_API_URL"):
        Endpoint(url, api_key=None)


def test_answers_give_each_caller_what_it_asked_for() -> None:
    api = Endpoint(URL, api_key=None)
    job = {"id": "j", "state": "COMPLETED"}
    assert api.read(requests.get_job("j"), httpx.Response(200, json=job)) == job
    assert api.read(requests.cancel_job("j"), httpx.Response(409, json=job)) == (409, job)
    with pytest.raises(ApiError) as caught:
        api.read(requests.get_job("j"), httpx.Response(409, json={"detail": "no"}))
    assert (caught.value.status, caught.value.detail, str(caught.value)) == (409, "no", "409 no")


def test_validation_errors_keep_their_list_and_read_as_where_and_what() -> None:
    error = responses.refusal(httpx.Response(422, json={"detail": VALIDATION}), sends_key=True)
    assert error.status == 422
    assert error.detail == VALIDATION
    assert str(error) == (
        "422 payload.seconds: Input should be >= 0; payload.extra: Extra inputs are not permitted"
    )


def test_a_401_says_which_setting_is_missing_only_when_no_key_was_sent() -> None:
    answer = httpx.Response(401, json={"detail": "an API key is required"})
    assert str(responses.refusal(answer, sends_key=True)) == "401 an API key is required"
    assert str(responses.refusal(answer, sends_key=False)) == (
        "401 an API key is required (no API key was sent; set ORCHESTRATOR_API_KEY)"
    )


def test_an_error_that_is_not_the_apis_json_shows_its_start_or_its_reason() -> None:
    page = httpx.Response(502, text="<html>\n<h1>Bad Gateway</h1>\n" + "x" * 500)
    error = responses.refusal(page, sends_key=True)
    assert (error.status, len(str(error.detail))) == (502, 200)
    assert str(error).startswith("502 <html> <h1>Bad Gateway</h1> xxx")
    assert str(responses.refusal(httpx.Response(503), sends_key=True)) == "503 Service Unavailable"


@pytest.mark.parametrize("body", [b"<html>ok</html>", b"[1, 2]", b""])
def test_a_document_that_is_not_a_json_object_is_an_error_with_the_status(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        responses.document(httpx.Response(200, content=body), base_url=URL)
    assert caught.value.status == 200
    assert str(caught.value).startswith(f"200 the API at {URL} answered with something other")


def test_no_answer_is_an_error_without_status_that_names_the_api() -> None:
    refused = Endpoint(URL, api_key=None).unreachable(httpx.ConnectError("[Errno 111]\nrefused"))
    assert (refused.status, refused.detail) == (None, None)
    assert str(refused) == f"the API at {URL} is unreachable: [Errno 111] refused"
    slow = Endpoint(URL, api_key=None).unreachable(httpx.ReadTimeout("t"), read_timeout=1.5)
    assert str(slow) == (
        f"the API at {URL} is unreachable: no answer in time (ReadTimeout; connect 5 s, read 1.5 s)"
    )
