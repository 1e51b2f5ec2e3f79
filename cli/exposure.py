"""Whether ``orchestrator api`` may serve on an address: an open API (no keys set) is a
choice, never an accident.

With neither ``ORCHESTRATOR_API_KEYS`` nor ``ORCHESTRATOR_READONLY_API_KEYS`` set, anyone
who reaches the API may submit and cancel jobs. That is refused on any address but
loopback unless ``ORCHESTRATOR_ALLOW_ANONYMOUS`` says so, and checked before a socket is
made. Names are not resolved (that would ask a DNS server): only ``localhost`` and
loopback literals count as loopback.
"""

from __future__ import annotations

import ipaddress

from orchestrator_core import Settings
from orchestrator_core.exceptions import ConfigurationError


def is_loopback(host: str) -> bool:
    """``localhost``, or an address in 127.0.0.0/8 or ``::1`` (bracketed, or as an
    IPv4-mapped IPv6 address, too)."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def open_api_warning(settings: Settings, host: str) -> str | None:
    """The warning to log when the API would serve open on ``host``; None when keys are set.

    :raises ConfigurationError: no keys, ``host`` is not loopback, and anonymous access
        was not allowed.
    """
    if settings.api_keys or settings.readonly_api_keys:
        return None
    if not is_loopback(host):
        if not settings.allow_anonymous:
            raise ConfigurationError(
                f"refusing to serve on {host} with no API keys, which would let anyone who "
                "reaches it run and cancel jobs: set ORCHESTRATOR_API_KEYS (or bind a "
                "loopback address), or set ORCHESTRATOR_ALLOW_ANONYMOUS=true to serve an "
                "open API on purpose"
            )
        return (
            f"serving an open API on {host} (ORCHESTRATOR_ALLOW_ANONYMOUS=true): no API keys "
            "are set, so anyone who reaches it may run and cancel jobs"
        )
    return (
        f"serving an open API on {host}: no API keys are set, so anyone who can connect "
        "to it may run and cancel jobs; set ORCHESTRATOR_API_KEYS to require a key"
    )
