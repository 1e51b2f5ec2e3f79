"""Every ``http.request`` test runs on a network of its own (:class:`http_network.Network`)."""

from __future__ import annotations

import pytest
from http_network import Network
from orchestrator_http import request


@pytest.fixture(autouse=True)
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    """The test's :class:`Network`, which every request of the plugin goes through."""
    net = Network()
    monkeypatch.setattr(request, "outbound", net.outbound)
    return net
