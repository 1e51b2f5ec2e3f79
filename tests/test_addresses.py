"""The outgoing-address guard: which addresses are refused, the allow-list, the backend.

The backend is driven with a stand-in for httpcore's own backend, so every test here
runs without a socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import pickle
import socket
from collections.abc import Iterable

import httpcore
import pytest

from orchestrator_core import AddressPolicy, AddressRefusedError, ConfigurationError, PermanentError
from orchestrator_core.addresses import (
    GuardedNetworkBackend,
    embedded_ipv4,
    parse_networks,
    refusal,
)
from orchestrator_core.settings import load_settings


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "the cloud metadata address (link-local)"),
        ("fd00:ec2::254", "the cloud metadata address (unique local)"),
        ("169.254.0.1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.1", "a private address (RFC 1918)"),
        ("172.31.255.255", "a private address (RFC 1918)"),
        ("192.168.0.1", "a private address (RFC 1918)"),
        ("fc00::1", "a private address (unique local, fc00::/7)"),
        ("100.64.0.0", "a shared address (carrier-grade NAT, 100.64.0.0/10)"),
        ("100.127.255.255", "a shared address (carrier-grade NAT, 100.64.0.0/10)"),
        ("0.0.0.0", "an unspecified address ('this network', 0.0.0.0/8)"),
        ("0.1.2.3", "an unspecified address ('this network', 0.0.0.0/8)"),
        ("::", "an unspecified address"),
        ("224.0.0.251", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff05::2", "a multicast address"),
        ("255.255.255.255", "a reserved address (240.0.0.0/4, with the broadcast address)"),
        ("198.18.0.1", "a reserved address (benchmarking)"),
        ("2001:db8::1", "a reserved address (documentation)"),
        ("::127.0.0.1", "a reserved address (::/8, with IPv4-compatible forms)"),
        ("fec0::1", "a reserved address (site-local, deprecated)"),
        ("::ffff:127.0.0.1", "a loopback address, written as IPv6"),
        ("::ffff:169.254.169.254", "the cloud metadata address (link-local), written as IPv6"),
        ("64:ff9b::10.0.0.1", "a private address (RFC 1918), written as IPv6"),
        ("2002:c0a8:101::1", "a private address (RFC 1918), written as IPv6"),
    ],
)
def test_each_internal_address_is_refused_with_what_it_is(address: str, reason: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason
    assert not AddressPolicy().allows(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None
    assert AddressPolicy().allows(ipaddress.ip_address(address))


def test_the_ipv4_inside_an_ipv6_address_is_found() -> None:
    assert embedded_ipv4(ipaddress.ip_address("::ffff:10.1.2.3")) == ipaddress.ip_address(
        "10.1.2.3"
    )
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) == ipaddress.ip_address(
        "169.254.169.254"
    )
    assert embedded_ipv4(ipaddress.ip_address("2002:0a01:0203::")) == ipaddress.ip_address(
        "10.1.2.3"
    )
    assert embedded_ipv4(ipaddress.ip_address("fe80::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("10.1.2.3")) is None


def test_the_allow_list_opens_its_networks_and_their_ipv6_forms_only() -> None:
    policy = AddressPolicy.from_settings(load_settings(http_allow_networks="10.0.0.0/8,fd00::/8"))

    assert policy.allow == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    for allowed in ("10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203", "fd12::1", "8.8.8.8"):
        assert policy.allows(ipaddress.ip_address(allowed)), allowed
    for refused in ("127.0.0.1", "::ffff:127.0.0.1", "169.254.169.254", "fc00::1", "::1"):
        assert not policy.allows(ipaddress.ip_address(refused)), refused


@pytest.mark.parametrize("value", ["10.0.0.1/8", "10.0.0.0/33", "localhost", "10.0.0.0/8x"])
def test_a_value_of_the_allow_list_that_is_not_a_network_names_the_setting(value: str) -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_HTTP_ALLOW_NETWORKS") as caught:
        parse_networks(["127.0.0.0/8", value])
    assert repr(value) in str(caught.value)


def test_a_bare_address_in_the_allow_list_is_a_network_of_one() -> None:
    assert parse_networks([" 169.254.169.254 ", "::1"]) == (
        ipaddress.ip_network("169.254.169.254/32"),
        ipaddress.ip_network("::1/128"),
    )


def test_vet_refuses_the_host_for_any_refused_address_and_says_how_to_allow_it() -> None:
    policy = AddressPolicy(allow=parse_networks(["127.0.0.0/8"]))

    assert policy.vet("ok.test", ["127.0.0.1", "8.8.8.8"]) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("8.8.8.8"),
    ]
    with pytest.raises(AddressRefusedError) as caught:
        policy.vet("mixed.test", ["127.0.0.1", "::ffff:10.1.2.3"])

    error = caught.value
    assert isinstance(error, PermanentError)
    assert (error.host, error.address, error.network) == (
        "mixed.test",
        "::ffff:a01:203",
        "10.1.2.3/32",
    )
    assert str(error) == (
        "refused to connect to mixed.test (::ffff:a01:203): it is a private address (RFC 1918), "
        "written as IPv6; to allow it, add a network holding it (such as 10.1.2.3/32) to "
        "ORCHESTRATOR_HTTP_ALLOW_NETWORKS"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.host, copy.reason) == (str(error), error.host, error.reason)


class Recording(httpcore.AsyncNetworkBackend):
    """Stands in for httpcore's backend: records each connect, and refuses those listed."""

    def __init__(self, *, refuse: Iterable[str] = ()) -> None:
        self.connected: list[tuple[str, int]] = []
        self.refuse = set(refuse)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        if host in self.refuse:
            raise httpcore.ConnectError(f"{host} refused")
        return httpcore.AsyncNetworkStream()


def backend(
    answers: dict[str, list[str]], inner: Recording, *, allow: str = "127.0.0.0/8"
) -> tuple[GuardedNetworkBackend, list[str]]:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "no such name")
        return answers[host]

    policy = AddressPolicy(allow=parse_networks([allow]))
    return GuardedNetworkBackend(policy, resolver=resolver, backend=inner), asked


def test_the_backend_connects_to_the_vetted_address_and_tries_each_in_turn() -> None:
    inner = Recording(refuse=["127.0.0.2"])
    guarded, asked = backend({"two.test": ["127.0.0.2", "127.0.0.3"]}, inner)

    asyncio.run(guarded.connect_tcp("two.test", 8080, timeout=1))

    assert asked == ["two.test"]
    assert inner.connected == [("127.0.0.2", 8080), ("127.0.0.3", 8080)]


def test_the_backend_refuses_before_connecting_and_never_resolves_an_address() -> None:
    inner = Recording()
    guarded, asked = backend({"metadata.test": ["169.254.169.254"]}, inner)

    with pytest.raises(AddressRefusedError, match=r"metadata\.test \(169"):
        asyncio.run(guarded.connect_tcp("metadata.test", 80))
    with pytest.raises(AddressRefusedError, match=r"refused to connect to 10\.1\.2\.3:"):
        asyncio.run(guarded.connect_tcp("10.1.2.3", 80))

    assert asked == ["metadata.test"]
    assert inner.connected == []


def test_the_backend_turns_resolution_failures_into_connect_errors() -> None:
    inner = Recording()
    guarded, _ = backend({"empty.test": []}, inner)

    with pytest.raises(httpcore.ConnectError, match=r"cannot resolve missing\.test"):
        asyncio.run(guarded.connect_tcp("missing.test", 80))
    with pytest.raises(httpcore.ConnectError, match=r"empty\.test resolves to no address"):
        asyncio.run(guarded.connect_tcp("empty.test", 80))
    with pytest.raises(httpcore.ConnectError, match="Unix socket"):
        asyncio.run(guarded.connect_unix_socket("/run/docker.sock"))
    assert inner.connected == []


def test_a_resolver_slower_than_the_connect_timeout_is_a_connect_timeout() -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["127.0.0.1"]

    inner = Recording()
    guarded = GuardedNetworkBackend(AddressPolicy(), resolver=slow, backend=inner)

    with pytest.raises(httpcore.ConnectTimeout, match=r"resolving slow\.test"):
        asyncio.run(guarded.connect_tcp("slow.test", 80, timeout=0.05))
    assert inner.connected == []
