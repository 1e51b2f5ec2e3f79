"""The test's own network for ``http.request``: names it resolves, and the allow-list.

The plugin reads its address guard from the settings once per process; each test gets
its own instead (the ``network`` fixture of ``conftest.py``), so a test name such as
``metadata.test`` can stand for any address without a DNS query, and nothing depends on
the machine's settings or resolver.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from orchestrator_http.outbound import Outbound

from orchestrator_core import AddressPolicy, load_settings


@dataclass
class Network:
    """What the plugin's requests see of the network in one test.

    :ivar names: the addresses each test name resolves to.
    :ivar allow: ``ORCHESTRATOR_HTTP_ALLOW_NETWORKS`` for the test (loopback by default:
        the test servers listen on 127.0.0.1).
    :ivar asked: every name resolved, in order; IP addresses are never resolved.
    :ivar ssl_context: the TLS context requests use; None takes the plugin's default.
    """

    names: dict[str, list[str]] = field(default_factory=dict)
    allow: list[str] = field(default_factory=lambda: ["127.0.0.0/8"])
    asked: list[str] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        try:
            return self.names[host]
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not a name of this test") from None

    def outbound(self) -> Outbound:
        settings = load_settings(http_allow_networks=",".join(self.allow))
        return Outbound(
            AddressPolicy.from_settings(settings),
            resolver=self.resolve,
            ssl_context=self.ssl_context,
        )
