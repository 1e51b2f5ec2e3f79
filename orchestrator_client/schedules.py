"""The ``/schedules`` calls of the REST API, on a blocking :class:`Client`::

from orchestrator_client import Client
from orchestrator_client.schedules import Schedules

with Client("http://localhost:8000", api_key="...") as client:
    schedules = Schedules(client)
    schedules.create("nightly", "0 3 * * *", "demo.echo", {"message": "hi"},
                     timezone="Europe/Berlin")
    schedules.pause("nightly")
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from orchestrator_client.client import Client
from orchestrator_client.requests import Call
from orchestrator_client.responses import Document


def schedule_path(name: str) -> str:
    """The path of schedule ``name``."""
    # Quoted whole, so a name holding "/" or "?" cannot reach another route.
    return f"/schedules/{quote(name, safe='')}"


def _document(status: int, document: Document) -> Document:
    return document


def _items(status: int, document: Document) -> list[Document]:
    items = document.get("items")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


class Schedules:
    """The cron schedules of the API that ``client`` talks to; every failure is an
    :class:`~orchestrator_client.ApiError`, as with the client's own calls."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        cron: str,
        type: str,
        payload: Document,
        *,
        timezone: str = "UTC",
        priority: int | None = None,
        concurrency_key: str | None = None,
        enabled: bool = True,
    ) -> Document:
        """Create a schedule and return its document.

        :raises ApiError: 422 for a bad name, cron, time zone, type or payload; 409 when
            the name is taken.
        """
        body: Document = {
            "name": name,
            "cron": cron,
            "timezone": timezone,
            "type": type,
            "payload": payload,
            "enabled": enabled,
        }
        for option, value in (("priority", priority), ("concurrency_key", concurrency_key)):
            if value is not None:
                body[option] = value
        return self._client._call(
            Call("POST", "/schedules", frozenset({201}), _document, body=body)
        )

    def list(self) -> list[Document]:
        """Every schedule, by name."""
        return self._client._call(Call("GET", "/schedules", frozenset({200}), _items))

    def get(self, name: str) -> Document:
        """:raises ApiError: 404 when there is no such schedule."""
        return self._client._call(Call("GET", schedule_path(name), frozenset({200}), _document))

    def update(self, name: str, **fields: Any) -> Document:
        """Change the fields given (``priority=None`` removes the priority, say).

        :raises ApiError: 404 when there is no such schedule, 422 for a bad value.
        """
        call = Call("PATCH", schedule_path(name), frozenset({200}), _document, body=fields)
        return self._client._call(call)

    def pause(self, name: str) -> Document:
        """Stop firing it; the jobs it made are left alone."""
        return self.update(name, enabled=False)

    def resume(self, name: str) -> Document:
        """Fire it again, from its next fire on: fires missed while paused never run."""
        return self.update(name, enabled=True)

    def delete(self, name: str) -> None:
        """:raises ApiError: 404 when there is no such schedule."""
        client = self._client
        # Answered with no body (204), which the client's reading of documents refuses.
        call: Call[None] = Call("DELETE", schedule_path(name), frozenset({204}), lambda s, d: None)
        try:
            response = client._http.send(client._api.request(client._http, call))
        except httpx.TransportError as exc:
            raise client._api.unreachable(exc) from exc
        if response.status_code not in call.expected:
            raise client._api.refusal(response)
