"""What ``container.run`` jobs may take from the worker's machine, by the operator's settings.

A container that shares the machine's network reaches every service bound to its
loopback (Redis, the broker, a metadata endpoint); a privileged one, or one with added
capabilities or the machine's devices, can take the machine over. Anyone who may submit
jobs could ask for these, so they are refused unless the operator allows them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from orchestrator_core import load_settings

HOST_NETWORK_SETTING = "ORCHESTRATOR_CONTAINER_ALLOW_HOST_NETWORK"
PRIVILEGED_SETTING = "ORCHESTRATOR_CONTAINER_ALLOW_PRIVILEGED"


@dataclass(frozen=True)
class HostAccess:
    """What the settings allow.

    :ivar host_network: containers may share the machine's network namespace.
    :ivar privileged: containers may be privileged, add capabilities and get devices.
    """

    host_network: bool
    privileged: bool


@functools.cache
def host_access() -> HostAccess:
    """The settings' :class:`HostAccess`, read once per process: in the API, where a
    payload asking for more is a 422, and in the worker, which checks again."""
    settings = load_settings()
    return HostAccess(
        host_network=settings.container_allow_host_network,
        privileged=settings.container_allow_privileged,
    )
