"""The outgoing-address guard: which addresses requests made on behalf of jobs may reach.

A job that names a URL chooses where the worker connects. Without a guard, a URL of
``http://169.254.169.254/`` reads the cloud's metadata (and its credentials), and
``http://10.0.0.5:6379/`` talks to the services behind the firewall. So every host is
resolved first, every address it resolves to is vetted against :data:`REFUSED`, and
the connection goes to an address that was vetted: a name whose DNS answer changes
between the check and the connect (DNS rebinding) cannot slip through, because nothing
resolves it a second time.

:class:`AddressPolicy` holds the exceptions (``ORCHESTRATOR_HTTP_ALLOW_NETWORKS``);
:class:`GuardedNetworkBackend` applies it to every connection httpcore opens, the
first and each redirect's; :class:`GuardedTransport` is the httpx transport built on it,
for ``httpx.AsyncClient(transport=...)``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio
import httpcore
import httpx

from orchestrator_core.exceptions import AddressRefusedError, ConfigurationError
from orchestrator_core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves ``(host, port)`` to the addresses to connect to, best first (what
:func:`resolve_host` does with the system's resolver). Tests pass their own, so that a
test name can stand for any address without a packet leaving the machine."""

_METADATA = "the cloud metadata address (link-local)"
_METADATA_V6 = "the cloud metadata address (unique local)"
_PRIVATE = "a private address (RFC 1918)"
_DOCUMENTATION = "a reserved address (documentation)"

REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    sorted(
        (
            (ipaddress.ip_network(network), reason)
            for network, reason in (
                ("169.254.169.254/32", _METADATA),
                ("fd00:ec2::254/128", _METADATA_V6),
                ("0.0.0.0/8", "an unspecified address ('this network', 0.0.0.0/8)"),
                ("::/128", "an unspecified address"),
                ("127.0.0.0/8", "a loopback address"),
                ("::1/128", "a loopback address"),
                ("10.0.0.0/8", _PRIVATE),
                ("172.16.0.0/12", _PRIVATE),
                ("192.168.0.0/16", _PRIVATE),
                ("fc00::/7", "a private address (unique local, fc00::/7)"),
                ("100.64.0.0/10", "a shared address (carrier-grade NAT, 100.64.0.0/10)"),
                ("169.254.0.0/16", "a link-local address"),
                ("fe80::/10", "a link-local address"),
                ("224.0.0.0/4", "a multicast address"),
                ("ff00::/8", "a multicast address"),
                ("240.0.0.0/4", "a reserved address (240.0.0.0/4, with the broadcast address)"),
                ("192.0.0.0/24", "a reserved address (IETF protocol assignments)"),
                ("192.0.2.0/24", _DOCUMENTATION),
                ("198.51.100.0/24", _DOCUMENTATION),
                ("203.0.113.0/24", _DOCUMENTATION),
                ("2001:db8::/32", _DOCUMENTATION),
                ("198.18.0.0/15", "a reserved address (benchmarking)"),
                ("192.88.99.0/24", "a reserved address (6to4 relay anycast)"),
                ("::/8", "a reserved address (::/8, with IPv4-compatible forms)"),
                ("100::/64", "a reserved address (discard only)"),
                ("2001::/23", "a reserved address (IETF protocol assignments)"),
                ("64:ff9b:1::/48", "a reserved address (local-use NAT64)"),
                ("fec0::/10", "a reserved address (site-local, deprecated)"),
            )
        ),
        # Most specific first, so the metadata address is named as such.
        key=lambda entry: -entry[0].prefixlen,
    )
)
"""Every network an outgoing request must not reach unless allowed, and what it is.

IPv4-mapped (``::ffff:a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``) and 6to4 (``2002::/16``)
addresses are judged by the IPv4 address they carry. Anything else that Python's
:mod:`ipaddress` does not call globally routable is refused too."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: IPAddress) -> str | None:
    """What kind of refused address ``address`` is ("a loopback address"), or None when
    it is a public one, whatever the allow-list says."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = refusal(inner)
        return None if reason is None else f"{reason}, written as IPv6"
    for network, reason in REFUSED:
        if address in network:
            return reason
    if not address.is_global or address.is_multicast:
        return "an address that is not globally routable"
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The networks of ``ORCHESTRATOR_HTTP_ALLOW_NETWORKS`` (CIDR; a bare address is a
    network of one).

    :raises ConfigurationError: naming the first value that is not a network.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=True))
        except ValueError as exc:
            raise ConfigurationError(
                f"ORCHESTRATOR_HTTP_ALLOW_NETWORKS: {value!r} is not a network in CIDR "
                f"notation such as 10.0.0.0/8 or fd00::/8 ({exc})"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outgoing requests may reach: every public one, and the refused
    ones (:data:`REFUSED`) that a network of ``allow`` holds.

    :ivar allow: the networks that are reachable although they are refused by default.
    """

    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        """The policy ``ORCHESTRATOR_HTTP_ALLOW_NETWORKS`` describes.

        :raises ConfigurationError: a value of it is not a network.
        """
        return cls(allow=parse_networks(settings.http_allow_networks))

    def allows(self, address: IPAddress) -> bool:
        """Whether ``address`` is public, or inside a network of ``allow`` (an IPv6 form
        of an IPv4 address counts as inside the networks that hold that IPv4 address)."""
        if refusal(address) is None:
            return True
        candidates = [address, embedded_ipv4(address)]
        return any(
            candidate is not None and candidate in network
            for candidate in candidates
            for network in self.allow
        )

    def vet(self, host: str, addresses: Iterable[str]) -> list[IPAddress]:
        """The addresses ``host`` resolved to, parsed, once every one of them is allowed.

        One refused address refuses the host: a name that resolves to a public address
        and a private one is either misconfigured or an attempt to slip past the guard.

        :raises AddressRefusedError: naming the host, the first refused address and why.
        :raises ValueError: an item is not an IP address (a resolver's mistake).
        """
        vetted = []
        for text in addresses:
            address = ipaddress.ip_address(text)
            if not self.allows(address):
                reason = refusal(address)
                assert reason is not None  # allows() is True for every public address
                inner = embedded_ipv4(address)
                network = (
                    f"{inner}/32" if inner is not None else f"{address}/{address.max_prefixlen}"
                )
                raise AddressRefusedError(
                    host, address=str(address), reason=reason, network=network
                )
            vetted.append(address)
        return vetted


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for ``host``, in its order of preference,
    each once.

    :raises OSError: the name does not resolve (``socket.gaierror``).
    """
    found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves each host itself, vets every address with
    an :class:`AddressPolicy`, and connects to a vetted address.

    httpcore asks its backend for every new connection, the first of a request and each
    one a redirect opens, so nothing connects unvetted. TLS is started by httpcore on
    the stream returned, with the URL's host as the server name, so certificates are
    checked against the name that was asked for, not the address.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = resolve_host,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host`` (unless it is an IP address), vet its addresses and connect
        to the first that answers.

        :raises AddressRefusedError: an address of ``host`` is refused; nothing connected.
        :raises httpcore.ConnectError: the host does not resolve, or no address answers.
        :raises httpcore.ConnectTimeout: resolving took longer than ``timeout``.
        """
        try:
            with anyio.fail_after(timeout):
                resolved = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = self.policy.vet(host, resolved)
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc  # the next address may answer
        assert failure is not None
        raise failure

    async def _resolve(self, host: str, port: int) -> Sequence[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            return await self.resolver(host, port)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: a Unix socket is a local service, which is what the guard keeps out."""
        raise httpcore.ConnectError(f"connecting to the Unix socket {path} is not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a :class:`GuardedNetworkBackend` under its connection pool.

    It never uses a proxy: behind one, the proxy would resolve and connect, out of the
    guard's sight.

    :param policy: the addresses it may reach.
    :param resolver: resolves each host; the system's by default.
    :param verify: the TLS context (or True for httpx's default, False for none).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = resolve_host,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=context, trust_env=False)
        # httpx takes no network backend, so the pool it built is replaced by the same
        # pool on the guarded backend; a version that no longer keeps its pool there
        # must fail here rather than connect unguarded.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise ConfigurationError(
                f"httpx {httpx.__version__} keeps its connection pool where the address "
                "guard cannot replace it; install the httpx version the orchestrator names"
            )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            network_backend=GuardedNetworkBackend(policy, resolver=resolver),
        )
