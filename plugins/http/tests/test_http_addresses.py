"""``http.request`` refuses internal addresses, after resolution and before connecting.

Nothing here leaves the loopback: test names resolve through the test's own resolver
(the ``network`` fixture), the only servers listen on 127.0.0.1, and the ``connects``
guard below fails the test on any attempt to connect anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from http_network import Network
from orchestrator_http import RequestPayload, outbound
from orchestrator_http.request import http_request
from pydantic import ValidationError

from orchestrator_core import (
    CancellationToken,
    ConfigurationError,
    JobType,
    PermanentError,
    load_settings,
)
from orchestrator_core.testing import JobRunner, check_distribution

SETTING = "ORCHESTRATOR_HTTP_ALLOW_NETWORKS"


class Connects:
    """Every TCP connect of this process during a test, and those the guard stopped."""

    def __init__(self) -> None:
        self.made: list[tuple[str, int]] = []
        self.stopped: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def check(self, sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host, port = str(address[0]), int(address[1])
        with self.lock:
            if ipaddress.ip_address(host.partition("%")[0]).is_loopback:
                self.made.append((host, port))
                return
            self.stopped.append((host, port))
        raise ConnectionRefusedError(f"the test guard stopped a connect to {host}:{port}")


@pytest.fixture(autouse=True)
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connects]:
    """Fails the test if anything in this process tries to connect off the loopback; the
    connect is stopped before a packet is sent, and the test fails at its end even if the
    code under test swallowed the error."""
    guard = Connects()
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        guard.check(sock, address)
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        guard.check(sock, address)
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield guard
    assert guard.stopped == [], "connected off the loopback"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.paths: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused TLS handshake or a client hanging up is the test's business


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        url = urlsplit(self.path)
        if url.path == "/redirect":
            self.reply(302, b"", {"Location": parse_qs(url.query)["to"][0]})
        else:
            echo = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self.reply(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving(Server()) as local:
        yield local


@pytest.fixture(scope="module")
def http() -> JobType:
    [job_type] = check_distribution("orchestrator-http")
    return job_type


def assert_refused(
    job_runner: JobRunner, http: JobType, url: str, *, host: str, address: str, reason: str
) -> str:
    """Run a GET of ``url``: it must fail for good, naming the host, the address, why it
    is refused and the setting that would allow it. Returns the message."""
    run = job_runner.run(http, {"url": url})
    error = run.assert_failed(error_type=PermanentError, retryable=False)
    assert f"refused to connect to {host}" in error.message
    assert address in error.message
    assert reason in error.message
    assert SETTING in error.message
    return error.message


# --- Refused before any connect ------------------------------------------------------


def test_a_name_of_the_metadata_address_is_refused_before_connecting(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects
) -> None:
    network.names["metadata.test"] = ["169.254.169.254"]

    message = assert_refused(
        job_runner,
        http,
        "http://metadata.test/latest/meta-data/",
        host="metadata.test",
        address="169.254.169.254",
        reason="the cloud metadata address",
    )

    assert message.startswith("GET http://metadata.test/latest/meta-data/ failed: ")
    assert "169.254.169.254/32" in message
    assert network.asked == ["metadata.test"]
    assert connects.made == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "a private address (RFC 1918)"),
        ("172.16.0.9", "a private address (RFC 1918)"),
        ("192.168.1.1", "a private address (RFC 1918)"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.10.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fd12:3456::1", "a private address (unique local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.10", "a reserved address (documentation)"),
        ("::ffff:10.1.2.3", "a private address (RFC 1918), written as IPv6"),
        ("::ffff:169.254.169.254", "the cloud metadata address (link-local), written as IPv6"),
        ("::ffff:127.0.0.1", "a loopback address, written as IPv6"),
        ("64:ff9b::a01:203", "a private address (RFC 1918), written as IPv6"),
    ],
)
def test_each_kind_of_internal_address_is_refused(
    job_runner: JobRunner,
    http: JobType,
    network: Network,
    connects: Connects,
    address: str,
    reason: str,
) -> None:
    network.allow = []
    network.names["internal.test"] = [address]

    assert_refused(
        job_runner,
        http,
        "http://internal.test:8080/",
        host="internal.test",
        address=str(ipaddress.ip_address(address)),  # as Python writes it
        reason=reason,
    )
    assert connects.made == []


@pytest.mark.parametrize(
    ("url", "address", "reason"),
    [
        ("http://169.254.169.254/latest/", "169.254.169.254", "the cloud metadata address"),
        ("http://10.1.2.3:9200/", "10.1.2.3", "a private address (RFC 1918)"),
        (
            "http://[::ffff:a9fe:a9fe]/",
            "::ffff:a9fe:a9fe",
            "metadata address (link-local), written",
        ),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254", "the cloud metadata address (unique local)"),
    ],
)
def test_an_address_in_the_url_is_vetted_without_a_lookup(
    job_runner: JobRunner,
    http: JobType,
    network: Network,
    connects: Connects,
    url: str,
    address: str,
    reason: str,
) -> None:
    assert_refused(job_runner, http, url, host=address, address=address, reason=reason)
    assert network.asked == []
    assert connects.made == []


def test_one_internal_address_among_allowed_ones_refuses_the_host(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects, server: Server
) -> None:
    # Loopback is allowed here; the private address alone refuses the name, before the
    # allowed address is tried.
    network.names["mixed.test"] = ["127.0.0.1", "10.1.2.3"]

    assert_refused(
        job_runner,
        http,
        server.url("/", host="mixed.test"),
        host="mixed.test",
        address="10.1.2.3",
        reason="a private address (RFC 1918)",
    )
    assert connects.made == []


def test_a_redirect_to_an_internal_name_is_refused_before_connecting_there(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects, server: Server
) -> None:
    network.names["metadata.test"] = ["169.254.169.254"]
    url = server.url("/redirect?to=http://metadata.test/latest/meta-data/iam")

    message = assert_refused(
        job_runner,
        http,
        url,
        host="metadata.test",
        address="169.254.169.254",
        reason="the cloud metadata address",
    )

    assert message.startswith(f"GET {url} failed: ")
    assert network.asked == ["metadata.test"]
    # The one connection made is the first request's, to the local server.
    assert connects.made == [("127.0.0.1", server.port)]
    assert "/redirect?to=http://metadata.test/latest/meta-data/iam" in server.paths


def test_a_redirect_to_a_private_address_is_refused(
    job_runner: JobRunner, http: JobType, connects: Connects, server: Server
) -> None:
    url = server.url("/redirect?to=http://10.1.2.3:6379/")

    assert_refused(
        job_runner, http, url, host="10.1.2.3", address="10.1.2.3", reason="a private address"
    )
    assert connects.made == [("127.0.0.1", server.port)]


def test_a_name_that_does_not_resolve_is_a_failed_attempt_to_retry(
    job_runner: JobRunner, http: JobType, connects: Connects
) -> None:
    run = job_runner.run(http, {"url": "http://missing.test/"})

    error = run.assert_retried(error_type="RequestError")
    assert "cannot resolve missing.test" in error.message
    assert connects.made == []


# --- Allowed --------------------------------------------------------------------------


def test_without_the_allow_list_a_local_server_is_refused(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects, server: Server
) -> None:
    network.allow = []
    network.names["local.test"] = ["127.0.0.1"]

    message = assert_refused(
        job_runner,
        http,
        server.url("/echo", host="local.test"),
        host="local.test",
        address="127.0.0.1",
        reason="a loopback address",
    )
    assert "127.0.0.1/32" in message
    assert connects.made == []


def test_the_allow_list_lets_a_request_to_a_local_server_through(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects, server: Server
) -> None:
    network.allow = ["127.0.0.0/8"]
    network.names["local.test"] = ["127.0.0.1"]

    result = job_runner.run(
        http, {"url": server.url("/echo", host="local.test")}
    ).assert_completed()

    assert result["status"] == 200
    # The request names the host it was asked for; the connection went to the address
    # that was vetted.
    assert result["body"]["headers"]["host"] == f"local.test:{server.port}"
    assert connects.made == [("127.0.0.1", server.port)]


def test_a_name_is_resolved_once_per_connection_and_its_vetted_address_connected(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects, server: Server
) -> None:
    # A resolver whose later answers point elsewhere (DNS rebinding) gets no second chance:
    # the guard resolves once and connects to what it vetted.
    answers = iter([["127.0.0.1"], ["10.1.2.3"], ["10.1.2.3"]])

    async def rebinding(host: str, port: int) -> list[str]:
        network.asked.append(host)
        return next(answers)

    network.resolve = rebinding  # type: ignore[method-assign]
    url = server.url("/redirect?to=/echo", host="rebind.test")

    result = job_runner.run(http, {"url": url}).assert_completed()

    assert result["body"]["path"] == "/echo"
    assert network.asked == ["rebind.test"]  # the redirect reused the vetted connection
    assert connects.made == [("127.0.0.1", server.port)]


def test_tls_checks_the_certificate_against_the_name_not_the_address(
    job_runner: JobRunner, http: JobType, network: Network, connects: Connects, tmp_path: Path
) -> None:
    server_context, client_context = tls_contexts(tmp_path, "secure.test")
    network.names["secure.test"] = ["127.0.0.1"]
    network.ssl_context = client_context

    with serving(Server(context=server_context)) as tls_server:
        url = tls_server.url("/echo", host="secure.test")
        result = job_runner.run(http, {"url": url}).assert_completed()
        assert result["body"]["headers"]["host"] == f"secure.test:{tls_server.port}"
        assert connects.made == [("127.0.0.1", tls_server.port)]


def test_the_allow_list_is_read_from_the_settings_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SETTING, "127.0.0.0/8, fd00::/8")
    outbound.outbound.cache_clear()
    try:
        policy = outbound.outbound().policy
        monkeypatch.setenv(SETTING, "10.0.0.0/8")
        assert outbound.outbound().policy is policy
    finally:
        outbound.outbound.cache_clear()
    assert policy.allow == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert not policy.allows(ipaddress.ip_address("10.1.2.3"))


def test_a_bad_allow_list_names_the_setting() -> None:
    # Refused when the settings load, so no process starts with it.
    with pytest.raises(ConfigurationError, match=f"{SETTING}: .*'10.0.0.1/8' is not a network"):
        load_settings(http_allow_networks="10.0.0.1/8")


# --- Secret headers -----------------------------------------------------------------


def test_secret_headers_are_sent_with_the_others(server: Server) -> None:
    # Straight to execute: the payload keeps the real values, as the worker's does.
    payload = RequestPayload.model_validate(
        {
            "url": server.url("/echo"),
            "headers": {"X-Plain": "p"},
            "secret_headers": {"Authorization": " Bearer s3cret "},
        }
    )

    result = asyncio.run(http_request(payload, CancellationToken()))

    headers = result["body"]["headers"]
    assert (headers["authorization"], headers["x-plain"]) == ("Bearer s3cret", "p")
    assert "s3cret" not in payload.model_dump_json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"headers": {"authorization": "a"}, "secret_headers": {"Authorization": "b"}},
            "'Authorization' is in both headers and secret_headers",
        ),
        ({"secret_headers": {"X-Key": "s3cret\r\nX-B: c"}}, "'X-Key' has a value"),
        ({"secret_headers": {"bad name": "s3cret"}}, "not a valid header name"),
    ],
)
def test_bad_secret_headers_are_refused_without_showing_the_value(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        RequestPayload.model_validate({"url": "http://x", **data})
    # What the API answers: the messages, without the input.
    details = caught.value.errors(include_url=False, include_input=False, include_context=False)
    assert "s3cret" not in json.dumps(details)


def test_the_guard_stops_a_connect_off_the_loopback(connects: Connects) -> None:
    with pytest.raises(ConnectionRefusedError, match=r"stopped a connect to 10\.1\.2\.3:80"):
        socket.create_connection(("10.1.2.3", 80), timeout=1)
    assert connects.stopped == [("10.1.2.3", 80)]
    connects.stopped.clear()  # stopped as it must be: not a failure of this test


def tls_contexts(directory: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for the DNS name ``name`` only (no
    IP address in it), and a client context that trusts just that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
