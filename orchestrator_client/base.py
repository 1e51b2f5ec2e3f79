"""What :class:`~orchestrator_client.Client` and :class:`~orchestrator_client.AsyncClient`
share besides their I/O, as httpx's two clients share ``httpx.BaseClient``."""

from __future__ import annotations

from typing import Self

from orchestrator_client.endpoint import Endpoint
from orchestrator_core.settings import Settings


class BaseClient:
    """A client of the REST API at ``base_url``, with ``api_key`` sent as a bearer token
    when given.

    :raises ConfigurationError: when ``base_url`` is not an http(s) URL.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None) -> None:
        self._api = Endpoint(base_url, api_key=api_key)
        self.base_url = self._api.base_url

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """A client of ``settings.api_url`` that sends ``settings.api_key`` if it is set."""
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return cls(settings.api_url, api_key=key)
