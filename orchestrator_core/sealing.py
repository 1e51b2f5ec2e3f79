"""The sealed copy of a payload with secret fields: stored beside the masked payload, opened
only by the worker, for ``execute``.

A job whose type has secret fields (``JobType.has_secrets``) stores its payload masked,
as every reader sees it, and in the hash field ``sealed`` the payload's JSON with the
real values (``JobType.reveal_payload``), which no route returns. Its format is marked:

- ``fernet:<token>``: encrypted with the first key of ``ORCHESTRATOR_PAYLOAD_KEY``
  (cryptography's Fernet); any of the keys opens it, so a key is rotated by putting a
  new one first and dropping the old one once the jobs it sealed are gone;
- ``plain:<json>``: no key was set where the job was submitted. The secrets are still
  never shown, but Redis holds them as they are.

A worker that cannot open a job's sealed copy fails the job (:class:`SealedPayloadError`)
rather than run ``execute`` with masked values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from orchestrator_core.exceptions import (
    ConfigurationError,
    SealedPayloadError,
    SerializationError,
)
from orchestrator_core.settings import Settings

logger = logging.getLogger(__name__)

ENCRYPTED = "fernet:"
PLAIN = "plain:"
KEY_SETTING = "ORCHESTRATOR_PAYLOAD_KEY"
_DIGEST_CONTEXT = b"orchestrator sealed payload digest\x00"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A payload's sealed copy, and what a repeat of its request is recognised by."""

    text: str
    """The value of the job hash's ``sealed`` field (``fernet:...`` or ``plain:...``)."""
    digest: str
    """A keyed hash of the real values, for the ``Idempotency-Key`` fingerprint: an
    encrypted copy differs on every call, and the fingerprint must not reveal a short
    secret to whoever reads Redis."""


class Sealer:
    """Seals payloads with the payload keys, newest first, and opens what any of them sealed.

    :param keys: Fernet keys (32 url-safe base64-encoded bytes each), newest first; none
        seals in the ``plain:`` format.
    :raises ConfigurationError: a key is not a Fernet key (naming its position only).
    """

    def __init__(self, keys: Sequence[SecretStr | str] = ()) -> None:
        values = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        fernets = []
        for position, value in enumerate(values, start=1):
            try:
                fernets.append(Fernet(value))
            except ValueError:  # binascii.Error too: not base64, or not 32 bytes
                raise ConfigurationError(
                    f"invalid settings: {KEY_SETTING}: key {position} of {len(values)} is not "
                    "a Fernet key (32 url-safe base64-encoded bytes); make one with "
                    "cryptography's Fernet.generate_key()"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None
        # Keyed by the oldest key: rotating (a new key put first) leaves it in place, so
        # a request repeated across a rotation is still recognised.
        self._digest_key = (
            hashlib.sha256(_DIGEST_CONTEXT + values[-1].encode()).digest() if values else b""
        )
        self._warned = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        """The sealer of ``settings.payload_key``."""
        return cls(settings.payload_key)

    @property
    def encrypts(self) -> bool:
        """True when payload keys are set, so sealed copies are encrypted."""
        return self._fernet is not None

    def seal(self, revealed: Mapping[str, Any]) -> Sealed:
        """The sealed copy of a payload's JSON with its real values (``reveal_payload``).

        :raises SerializationError: the payload is not JSON.
        """
        try:
            text = json.dumps(
                dict(revealed), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"payload is not JSON-serializable: {exc}") from None
        data = text.encode()
        if self._fernet is None:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "%s is not set: secret payload fields are stored unencrypted in Redis "
                    "(they are still masked everywhere they are shown)",
                    KEY_SETTING,
                )
            return Sealed(PLAIN + text, hashlib.sha256(data).hexdigest())
        digest = hmac.new(self._digest_key, data, hashlib.sha256).hexdigest()
        return Sealed(ENCRYPTED + self._fernet.encrypt(data).decode(), digest)

    def unseal(self, sealed: str | None, *, job_id: str) -> dict[str, Any]:
        """The payload JSON (real values in place) of job ``job_id``'s sealed copy.

        :raises SealedPayloadError: naming why: no copy, no key here, no key that opens
            it, or a copy that is not one.
        """
        if not sealed:
            raise SealedPayloadError(
                f"job {job_id} has no sealed copy of its secret payload fields (was it "
                "submitted before its type declared them?); submit it again",
                job_id=job_id,
            )
        if sealed.startswith(PLAIN):
            text = sealed.removeprefix(PLAIN)
        elif sealed.startswith(ENCRYPTED):
            text = self._decrypt(sealed.removeprefix(ENCRYPTED), job_id)
        else:
            raise SealedPayloadError(
                f"job {job_id}: its sealed payload is in no known format", job_id=job_id
            )
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            raise SealedPayloadError(
                f"job {job_id}: its sealed payload is not a JSON object", job_id=job_id
            )
        return payload

    def _decrypt(self, token: str, job_id: str) -> str:
        if self._fernet is None:
            raise SealedPayloadError(
                f"job {job_id}: its secret payload fields are encrypted and {KEY_SETTING} is "
                "not set on this worker; give the worker the keys the API encrypts with",
                job_id=job_id,
            )
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeError):
            raise SealedPayloadError(
                f"job {job_id}: none of the keys in {KEY_SETTING} decrypts its secret payload "
                "fields; add the key they were sealed with (keys are listed newest first, "
                "and an old key stays until its jobs are gone)",
                job_id=job_id,
            ) from None
