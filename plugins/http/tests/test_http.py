"""``http.request`` against a real HTTP server on 127.0.0.1, run by the kit as a worker would."""

from __future__ import annotations

import inspect
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from orchestrator_http.request import http_request
from pydantic import ValidationError

from orchestrator_core import JobType, PermanentError
from orchestrator_core.testing import JobRun, JobRunner, check_distribution

BIG = b'"' + b"a" * (1_048_576 - 2) + b'"'
JSON_DOC = {"hello": "wörld", "n": [1, 2, 3], "none": None}

# path -> (status, content type, body, extra headers)
FIXED: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
    "/json": (200, "application/json", json.dumps(JSON_DOC).encode(), {"X-Custom": "yes"}),
    "/problem": (200, "application/problem+json", b'{"title": "ok"}', {}),
    "/text": (200, "text/plain; charset=utf-8", "héllo wörld".encode(), {}),
    "/latin1": (200, "text/plain; charset=iso-8859-1", "café".encode("latin-1"), {}),
    "/no-charset": (200, "text/plain", "naïve".encode(), {}),
    "/bad-json": (200, "application/json", b"{not json", {}),
    "/nan-json": (200, "application/json", b"[NaN]", {}),
    "/redirect": (302, "text/plain", b"see /json", {"Location": "/json"}),
    "/big": (200, "application/json", BIG, {}),
}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.abandoned: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def abandoned_event(self, slow_id: str) -> threading.Event:
        with self.lock:
            return self.abandoned.setdefault(slow_id, threading.Event())

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early (truncated bodies, cancellations) are expected


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.dispatch()

    # The names BaseHTTPRequestHandler looks up.
    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path in FIXED:
            status, content_type, data, extra = FIXED[url.path]
            self.reply(status, content_type, data, extra)
        elif url.path == "/echo":
            echo = {
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self.reply(200, "application/json", json.dumps(echo).encode())
        elif url.path.startswith("/status/"):
            code = int(url.path.rpartition("/")[2])
            self.reply(code, "text/plain", f"status {code}\n  body".encode())
        elif url.path == "/slow":
            self.slow(parse_qs(url.query)["id"][0])
        else:
            self.reply(404, "text/plain", b"no such path")

    def reply(
        self, status: int, content_type: str, data: bytes, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for start in range(0, len(data), 65_536):
                self.wfile.write(data[start : start + 65_536])
        except ConnectionError:
            self.close_connection = True

    def slow(self, slow_id: str) -> None:
        """Answer after 10 s, giving up as soon as the client hangs up."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.client_gone(0.05):
                self.server.abandoned_event(slow_id).set()
                self.close_connection = True
                return
        self.reply(200, "text/plain", b"slow")

    def client_gone(self, seconds: float) -> bool:
        readable, _, _ = select.select([self.connection], [], [], seconds)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except ConnectionError:
            return True


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours proxy variables; these tests must only ever talk to 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def http() -> JobType:
    """``http.request`` as the installed distribution registers it."""
    [job_type] = check_distribution("orchestrator-http")
    return job_type


def slow_request(server: Server) -> tuple[str, threading.Event]:
    """A URL of its own on /slow, and the event the server sets once its client hangs up."""
    slow_id = uuid.uuid4().hex
    return server.url(f"/slow?id={slow_id}"), server.abandoned_event(slow_id)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- Completed ---------------------------------------------------------------------


def test_json_response_is_parsed_with_the_selected_headers(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    data = {"url": server.url("/json"), "result_headers": ["Content-Type", "X-CUSTOM", "X-Missing"]}
    job_runner.run(http, data).assert_completed(
        result={
            "status": 200,
            "headers": {"content-type": "application/json", "x-custom": "yes"},
            "body": JSON_DOC,
            "truncated": False,
        }
    )


def test_a_plus_json_media_type_is_parsed_too(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    result = job_runner.run(http, {"url": server.url("/problem")}).assert_completed()
    assert result["body"] == {"title": "ok"}


@pytest.mark.parametrize(
    ("path", "body"),
    [("/text", "héllo wörld"), ("/latin1", "café"), ("/no-charset", "naïve")],
)
def test_text_is_decoded_with_the_response_charset(
    job_runner: JobRunner, http: JobType, server: Server, path: str, body: str
) -> None:
    result = job_runner.run(http, {"url": server.url(path)}).assert_completed()
    assert result["body"] == body
    assert result["headers"] == {"content-type": FIXED[path][1]}
    assert result["truncated"] is False


@pytest.mark.parametrize("path", ["/bad-json", "/nan-json"])
def test_a_body_labelled_json_that_is_not_is_kept_as_text(
    job_runner: JobRunner, http: JobType, server: Server, path: str
) -> None:
    result = job_runner.run(http, {"url": server.url(path)}).assert_completed()
    assert result["body"] == FIXED[path][2].decode()


def test_json_body_is_sent_with_method_and_headers(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    sent = {"a": [1, None, "ü"], "b": {"c": True}}
    data = {
        "method": "POST",
        "url": server.url("/echo"),
        "json": sent,
        "headers": {"X-Token": "t-1", "X-Spaced": "  v  "},
    }
    echo = job_runner.run(http, data).assert_completed()["body"]
    assert echo["method"] == "POST"
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-token"] == "t-1"
    assert echo["headers"]["x-spaced"] == "v"
    assert json.loads(echo["body"]) == sent


@pytest.mark.parametrize("falsy", [0, False, "", [], {}])
def test_a_falsy_json_body_is_still_sent(
    job_runner: JobRunner, http: JobType, server: Server, falsy: Any
) -> None:
    data = {"method": "PUT", "url": server.url("/echo"), "json": falsy}
    echo = job_runner.run(http, data).assert_completed()["body"]
    assert json.loads(echo["body"]) == falsy


def test_text_body_is_sent_as_utf8_plain_text(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    data = {"method": "PUT", "url": server.url("/echo"), "text": "héllo"}
    echo = job_runner.run(http, data).assert_completed()["body"]
    assert echo["method"] == "PUT"
    assert echo["body"] == "héllo"
    assert echo["headers"]["content-type"] == "text/plain; charset=utf-8"


def test_a_content_type_header_overrides_the_text_default(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    data = {
        "method": "POST",
        "url": server.url("/echo"),
        "text": "<a/>",
        "headers": {"content-TYPE": "application/xml"},
    }
    echo = job_runner.run(http, data).assert_completed()["body"]
    assert echo["headers"]["content-type"] == "application/xml"
    assert echo["body"] == "<a/>"


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "OPTIONS", "patch"])
def test_each_method_is_sent(
    job_runner: JobRunner, http: JobType, server: Server, method: str
) -> None:
    data = {"method": method, "url": server.url("/echo")}
    echo = job_runner.run(http, data).assert_completed()["body"]
    assert echo["method"] == method.upper()
    assert echo["body"] == ""


def test_head_returns_headers_and_an_empty_body(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    job_runner.run(http, {"method": "HEAD", "url": server.url("/json")}).assert_completed(
        result={
            "status": 200,
            "headers": {"content-type": "application/json"},
            "body": "",
            "truncated": False,
        }
    )


def test_accept_status_can_accept_a_404(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    data = {"url": server.url("/status/404"), "accept_status": [200, 404]}
    result = job_runner.run(http, data).assert_completed()
    assert result["status"] == 404
    assert result["body"] == "status 404\n  body"


def test_redirects_are_followed(job_runner: JobRunner, http: JobType, server: Server) -> None:
    result = job_runner.run(http, {"url": server.url("/redirect")}).assert_completed()
    assert (result["status"], result["body"]) == (200, JSON_DOC)


# --- Body cap --------------------------------------------------------------------------


def test_a_big_body_is_cut_at_the_cap(job_runner: JobRunner, http: JobType, server: Server) -> None:
    data = {"url": server.url("/big"), "max_body_bytes": 1000}
    result = job_runner.run(http, data).assert_completed()
    assert result["truncated"] is True
    # Cut JSON is not parsed: the first 1000 bytes come back as text.
    assert result["body"] == '"' + "a" * 999
    assert len(result["body"].encode()) <= 1000


def test_a_body_of_exactly_the_cap_is_whole(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    size = len(FIXED["/json"][2])
    whole = {"url": server.url("/json"), "max_body_bytes": size}
    assert job_runner.run(http, whole).assert_completed()["body"] == JSON_DOC
    cut = {"url": server.url("/json"), "max_body_bytes": size - 1}
    result = job_runner.run(http, cut).assert_completed()
    assert result["truncated"] is True
    assert result["body"] == FIXED["/json"][2][: size - 1].decode()


def test_a_character_split_by_the_cap_is_dropped(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    # "héllo": the cap falls inside the two bytes of "é".
    data = {"url": server.url("/text"), "max_body_bytes": 2}
    result = job_runner.run(http, data).assert_completed()
    assert (result["body"], result["truncated"]) == ("h", True)


# --- Failed for good -------------------------------------------------------------------


def test_a_404_fails_for_good_with_the_status_and_an_excerpt(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    run = job_runner.run(http, {"url": server.url("/status/404")})

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert error.message == (
        f"GET {server.url('/status/404')} answered 404 Not Found: status 404 body"
    )


def test_a_2xx_outside_accept_status_fails_for_good(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    run = job_runner.run(http, {"url": server.url("/json"), "accept_status": [201]})

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert "answered 200 OK" in error.message


def test_a_redirect_not_followed_fails_for_good(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    run = job_runner.run(http, {"url": server.url("/redirect"), "follow_redirects": False})

    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert "answered 302 Found (not followed: follow_redirects is false)" in error.message


def test_credentials_in_the_url_stay_out_of_the_error(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    url = server.url("/status/404").replace("http://", "http://user:s3cret@")
    run = job_runner.run(http, {"url": url})

    assert run.error is not None
    assert "s3cret" not in run.error.message
    assert server.url("/status/404") in run.error.message


# --- Failed attempts, retried -------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429])
def test_try_later_statuses_are_retried(
    job_runner: JobRunner, http: JobType, server: Server, status: int
) -> None:
    run = job_runner.run(http, {"url": server.url(f"/status/{status}")})

    error = run.assert_retried(error_type="TryLaterError")
    assert f"answered {status}" in error.message


def test_a_503_is_a_failed_attempt_to_retry(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    run = job_runner.run(http, {"method": "POST", "url": server.url("/status/503"), "text": "x"})

    error = run.assert_retried(error_type="ServerError")
    assert error.message == (
        f"POST {server.url('/status/503')} answered 503 Service Unavailable: status 503 body"
    )


def test_connection_refused_is_a_failed_attempt_to_retry(
    job_runner: JobRunner, http: JobType
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/json"
    run = job_runner.run(http, {"url": url, "timeout": 5})

    error = run.assert_retried(error_type="RequestError")
    assert error.message.startswith(f"GET {url} failed: ConnectError")


def test_a_request_timeout_is_a_failed_attempt_and_hangs_up(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    url, abandoned = slow_request(server)
    run = job_runner.run(http, {"url": url, "timeout": 0.3})

    error = run.assert_retried(error_type="RequestError")
    assert error.message.startswith(f"GET {url} timed out")
    assert "0.3 s" in error.message
    assert run.duration < 5  # generous: the server would answer after 10 s
    assert abandoned.wait(5), "the server never saw the connection close"


# --- Cancellation and the job's timeout --------------------------------------------


def fire_during_a_slow_request(
    job_runner: JobRunner,
    http: JobType,
    server: Server,
    *,
    cancel_after: float | None = None,
    timeout: float | None = None,
) -> JobRun:
    """Request a URL that answers after 10 s and fire the token 0.2 s in: the attempt must
    end within a second, and the server see the connection close."""
    url, abandoned = slow_request(server)
    run = job_runner.run(http, {"url": url}, cancel_after=cancel_after, timeout=timeout)
    assert run.duration < 1.0, run.describe()
    assert abandoned.wait(5), "the server never saw the connection close"
    return run


def test_cancel_aborts_the_request_and_closes_the_connection(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    run = fire_during_a_slow_request(job_runner, http, server, cancel_after=0.2)

    run.assert_cancelled()
    assert run.error is None


def test_the_job_timeout_is_a_failed_attempt(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    run = fire_during_a_slow_request(job_runner, http, server, timeout=0.2)

    run.assert_timed_out()
    run.assert_retried(error_type="Timeout")
    assert run.outcome.reason == "timeout"


def test_a_token_fired_before_the_start_cancels_at_once(
    job_runner: JobRunner, http: JobType, server: Server
) -> None:
    url, _ = slow_request(server)
    job_runner.run(http, {"url": url}, cancel_after=0).assert_cancelled()


# --- Payload validation and declaration ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": "ftp://example.com/f"}, "only http:// and https:// URLs are supported"),
        ({"url": "example.com/f"}, "got no scheme"),
        ({"url": "http://"}, "the URL has no host"),
        ({"url": "http://x", "json": {"a": 1}, "text": "a"}, "either json or text, not both"),
        ({"url": "http://x", "accept_status": [99]}, "greater than or equal to 100"),
        ({"url": "http://x", "accept_status": [600]}, "less than or equal to 599"),
        ({"url": "http://x", "accept_status": []}, "at least 1 item"),
        ({"url": "http://x", "timeout": 0}, "greater than 0"),
        ({"url": "http://x", "timeout": 601}, "less than or equal to 600"),
        ({"url": "http://x", "timeout": float("nan")}, "finite number"),
        ({"url": "http://x", "max_body_bytes": 0}, "greater than or equal to 1"),
        ({"url": "http://x", "max_body_bytes": 1_048_577}, "less than or equal to 1048576"),
        ({"url": "http://x", "method": "TRACE"}, "Input should be 'GET'"),
        ({"url": "http://x", "headers": {"bad name": "v"}}, "not a valid header name"),
        ({"url": "http://x", "headers": {"X-A": "v\r\nX-B: w"}}, "control character"),
        ({"url": "http://x", "headers": {"X-A": "é"}}, "non-ASCII"),
        ({"url": "http://x", "result_headers": ["content type"]}, "not a valid header name"),
        ({"url": "http://x", "follow_redirect": False}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
def test_bad_payloads_are_rejected(
    job_runner: JobRunner, http: JobType, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        job_runner.run(http, data)


def test_payload_defaults_and_normalisation(http: JobType) -> None:
    payload = http.validate_payload(
        {"url": "https://example.com", "method": "post", "result_headers": ["X-A", "x-a", "ETag"]}
    )
    assert payload.model_dump(by_alias=True) == {
        "method": "POST",
        "url": "https://example.com",
        "headers": {},
        "secret_headers": {},
        "json": None,
        "text": None,
        "accept_status": None,
        "timeout": 30.0,
        "result_headers": ["x-a", "etag"],
        "max_body_bytes": 65_536,
        "follow_redirects": True,
    }
    defaults = http.validate_payload({"url": "http://x"})
    assert defaults.model_dump()["result_headers"] == ["content-type"]


def test_every_payload_field_is_described(http: JobType) -> None:
    properties = http.payload_schema()["properties"]
    assert set(properties) >= {"method", "url", "json", "text", "accept_status", "timeout"}
    for name, schema in properties.items():
        assert schema.get("description"), name


def test_declaration(http: JobType) -> None:
    assert http.name == "http.request"
    assert http.is_async
    assert (http.max_attempts, http.retry_backoff, http.retry_backoff_max) == (3, 1.0, 30.0)
    assert http.timeout is None
    assert http.description == inspect.getdoc(http_request)


def test_the_distribution_registers_http_request_of_its_plugin_module() -> None:
    found = {
        job_type.name: job_type.execute for job_type in check_distribution("orchestrator-http")
    }
    assert found == {"http.request": http_request}
