"""Who is calling: the API keys of the deployment, each with the role it grants.

Keys in ``ORCHESTRATOR_API_KEYS`` may do everything; keys in
``ORCHESTRATOR_READONLY_API_KEYS`` may only read. With neither set the API is open and
every caller may do everything (the CLI refuses that except on loopback).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from orchestrator_core import Settings


class Role(enum.StrEnum):
    """What a caller may do; ``GET /auth`` answers with it."""

    ADMIN = "admin"
    """Everything: reads and writes."""
    READ = "read"
    """GET routes, event streams and metrics; a write is 403."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of a request.

    :ivar owner: names the key (never holds it) for per-key limits such as the event
        stream cap; None on an open API, where the client's address stands in.
    """

    role: Role
    owner: str | None


ANONYMOUS = Caller(Role.ADMIN, None)
"""Every caller of an API with no keys set."""


class KeyRing:
    """The keys, encoded once, and the caller each one makes.

    A presented key is compared with every key, each in constant time, so that how long
    a refusal takes tells nothing about which key came close.
    """

    def __init__(self, full: Iterable[SecretStr], read_only: Iterable[SecretStr]) -> None:
        entries = [(key, Role.ADMIN) for key in full] + [(key, Role.READ) for key in read_only]
        self._entries = tuple(
            (key.get_secret_value().encode(), Caller(role, f"API key #{index}"))
            for index, (key, role) in enumerate(entries)
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.api_keys, settings.readonly_api_keys)

    @property
    def open(self) -> bool:
        """No key is set: anyone may do anything."""
        return not self._entries

    def caller(self, presented: bytes) -> Caller | None:
        """The caller that ``presented`` makes, or None when it is no key of ours."""
        found: Caller | None = None
        for key, caller in self._entries:
            if hmac.compare_digest(presented, key) and found is None:
                found = caller
        return found
