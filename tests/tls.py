"""A throwaway certificate authority, a Redis that speaks only TLS and the lines of a
RabbitMQ TLS listener, for the TLS tests.

The authority is made fresh in the test's folder, so no system store trusts it: a
client verifies the server only when given the authority's file.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from processes import free_port, stop

SERVER_NAMES = ("localhost", "127.0.0.1")
"""What the server certificate names: kombu connects to ``localhost`` as 127.0.0.1."""


@dataclass(frozen=True)
class Certificates:
    """PEM files: the authority's certificate, and the server's certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> Certificates:
    """A new authority and a certificate it signed for :data:`SERVER_NAMES`, in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orchestrator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(SERVER_NAMES[0]), x509.IPAddress(ipaddress.ip_address(SERVER_NAMES[1]))]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificates = Certificates(
        directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    )
    certificates.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certificates.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    certificates.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificates.key_file.chmod(0o600)
    return certificates


@dataclass(frozen=True)
class TlsRedis:
    """A private redis-server listening with TLS only, on ``port``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, host: str = "localhost") -> str:
        return f"rediss://{host}:{self.port}/0"


@contextlib.contextmanager
def tls_redis(
    certificates: Certificates, directory: Path, *, addresses: tuple[str, ...] = ("127.0.0.1",)
) -> Iterator[TlsRedis]:
    """Run a redis-server with no plain port, no persistence and no client certificates;
    stopped by its PID on the way out."""
    port = free_port()
    log = directory / "redis-tls.log"
    command = [
        "redis-server",
        "--bind",
        *addresses,
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(certificates.cert_file),
        "--tls-key-file",
        str(certificates.key_file),
        "--tls-ca-cert-file",
        str(certificates.ca_file),
        "--tls-auth-clients",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--logfile",
        str(log),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_for_tls(certificates, port, process, log)
        yield TlsRedis(port, process, log)
    finally:
        stop(process)


def _wait_for_tls(
    certificates: Certificates, port: int, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Until a TLS handshake with the server succeeds (it listens a moment after start)."""
    context = ssl.create_default_context(cafile=str(certificates.ca_file))
    deadline = time.monotonic() + 20
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return
        except OSError:
            text = log.read_text(errors="replace") if log.exists() else ""
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server with TLS did not start:\n{text}") from None
            time.sleep(0.05)


def rabbit_tls_listener(certificates: Certificates, port: int) -> tuple[str, ...]:
    """``rabbitmq.conf`` lines of a TLS listener on ``port`` of 127.0.0.1 and 127.0.0.2 that
    asks no client certificate (127.0.0.2 is loopback, but not a name the certificate has)."""
    return (
        f"listeners.ssl.default = 127.0.0.1:{port}",
        f"listeners.ssl.other = 127.0.0.2:{port}",
        f"ssl_options.cacertfile = {certificates.ca_file}",
        f"ssl_options.certfile = {certificates.cert_file}",
        f"ssl_options.keyfile = {certificates.key_file}",
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
    )
