"""Where ``http.request`` may connect: the address guard of the settings, read once."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass

import httpx

from orchestrator_core import AddressPolicy, GuardedTransport, Resolver, load_settings, resolve_host


@dataclass(frozen=True)
class Outbound:
    """How the requests of this process reach the network.

    :ivar policy: the addresses they may connect to (``ORCHESTRATOR_HTTP_ALLOW_NETWORKS``).
    :ivar resolver: resolves their hosts; the system's resolver by default.
    :ivar ssl_context: the TLS context; None takes httpx's default (certifi's authorities).
    """

    policy: AddressPolicy
    resolver: Resolver = resolve_host
    ssl_context: ssl.SSLContext | None = None

    def transport(self) -> httpx.AsyncBaseTransport:
        """A transport for one client: every connection it opens, redirects' included,
        goes to an address the policy allows, or is refused before it connects."""
        context = self.ssl_context if self.ssl_context is not None else default_ssl_context()
        return GuardedTransport(self.policy, resolver=self.resolver, verify=context)


@functools.cache
def outbound() -> Outbound:
    """The settings' :class:`Outbound`, read on the first request of the process.

    :raises ConfigurationError: ``ORCHESTRATOR_HTTP_ALLOW_NETWORKS`` holds a value that
        is not a network.
    """
    return Outbound(AddressPolicy.from_settings(load_settings()))


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default context, built once: building one loads the CA bundle, which
    takes tens of milliseconds on the event loop, for every job otherwise."""
    return httpx.create_ssl_context()
