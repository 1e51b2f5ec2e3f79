"""The API at one base URL, as both clients see it: the httpx requests they send and what
the answers mean. It does no I/O; the clients send what it builds."""

from __future__ import annotations

from typing import Any, TypedDict, TypeVar

import httpx

from orchestrator_client import responses
from orchestrator_client.requests import CONNECT_TIMEOUT, READ_TIMEOUT, Call, StreamCall
from orchestrator_core.exceptions import ApiError, ConfigurationError

T = TypeVar("T")


class HttpOptions(TypedDict):
    """The options of the httpx client that either class opens on the API."""

    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout


class Endpoint:
    """The REST API at ``base_url``, with ``api_key`` sent as a bearer token when given.

    :raises ConfigurationError: when ``base_url`` is not an http(s) URL.
    """

    def __init__(self, base_url: str, *, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            scheme = httpx.URL(self.base_url).scheme
        except httpx.InvalidURL as exc:
            scheme = f"invalid ({exc})"
        if scheme not in ("http", "https"):
            raise ConfigurationError(
                "the API URL (ORCHESTRATOR_API_URL) must start with http:// or https://, "
                f"not {base_url!r}"
            )
        self.sends_key = api_key is not None
        self.headers = {"Accept": "application/json"}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"

    @property
    def http_options(self) -> HttpOptions:
        return {
            "base_url": self.base_url,
            "headers": self.headers,
            "timeout": httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        }

    def request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        """``call`` as a request of ``http`` (its base URL and headers added)."""
        return http.build_request(
            call.method, call.path, params=call.params, json=call.body, headers=call.headers
        )

    def stream_request(
        self, http: httpx.Client | httpx.AsyncClient, call: StreamCall
    ) -> httpx.Request:
        """``call`` as a request of ``http``, to be sent with ``stream=True``."""
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT, read=call.read_timeout)
        headers = {"Accept": "text/event-stream", **call.headers}
        return http.build_request(
            "GET", call.path, params=call.params, headers=headers, timeout=timeout
        )

    def read(self, call: Call[T], response: httpx.Response) -> T:
        """What the caller of ``call`` gets from ``response``, read in full.

        :raises ApiError: for a status ``call`` does not expect, or a body that is not a
            JSON object (an array of them, for a listing).
        """
        if response.status_code not in call.expected:
            raise self.refusal(response)
        document = responses.document(response, base_url=self.base_url, listing=call.listing)
        return call.result(response.status_code, document)

    def refusal(self, response: httpx.Response) -> ApiError:
        """The error an error status stands for (the body of ``response`` read in full)."""
        return responses.refusal(response, sends_key=self.sends_key)

    def unreachable(
        self, exc: httpx.TransportError, *, read_timeout: float = READ_TIMEOUT
    ) -> ApiError:
        """The error for a request that got no answer, or whose answer broke off."""
        return responses.unreachable(
            exc, base_url=self.base_url, connect_timeout=CONNECT_TIMEOUT, read_timeout=read_timeout
        )
