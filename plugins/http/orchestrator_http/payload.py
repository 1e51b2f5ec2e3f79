"""``RequestPayload``: what a job of type ``http.request`` asks for."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    field_validator,
    model_validator,
)

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

MAX_BODY_BYTES = 1_048_576
"""The largest ``max_body_bytes`` a payload may ask for (1 MiB)."""

MAX_TIMEOUT = 600.0
"""The longest ``timeout`` a payload may ask for, in seconds."""

# RFC 9110 token: what a header name may contain.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII, space and tab: httpx encodes header values as ASCII, and CR or LF
# would let a value smuggle in another header.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")

Status = Annotated[int, Field(ge=100, le=599)]


class RequestPayload(BaseModel):
    """Payload of ``http.request``: one HTTP request and what counts as success."""

    # Forbidden extras turn a misspelt field into a validation error instead of a default.
    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        default="GET", description="HTTP method; lowercase is accepted and upper-cased."
    )
    url: str = Field(max_length=8192, description="Absolute http:// or https:// URL to request.")
    # Mutable defaults are safe here: pydantic copies them for each instance.
    headers: dict[str, str] = Field(
        default={},
        description="Request headers (printable ASCII values); they replace httpx's defaults "
        "of the same name.",
    )
    secret_headers: dict[str, SecretStr] = Field(
        default={},
        description="Request headers whose values are secret (an Authorization token, an "
        "API key): sent like headers, but never shown by the API, events or logs, and "
        "encrypted at rest when a payload key is set. A name may not also be in headers.",
    )
    # Named json_body because a field called ``json`` would shadow BaseModel.json.
    json_body: JsonValue = Field(
        default=None,
        alias="json",
        description="Body to send as JSON (Content-Type application/json); "
        "null means no JSON body. Excludes text.",
    )
    text: str | None = Field(
        default=None,
        description="Body to send as UTF-8 text (Content-Type text/plain unless a header "
        "sets one). Excludes json.",
    )
    accept_status: list[Status] | None = Field(
        default=None,
        min_length=1,
        description="Response statuses that complete the job; null accepts any 2xx. "
        "Any other 5xx is retried, anything else fails the job for good.",
    )
    timeout: float = Field(
        default=30.0,
        gt=0,
        le=MAX_TIMEOUT,
        allow_inf_nan=False,
        description="Seconds the whole request may take, from connecting to the last body "
        "byte kept; a timeout is retried.",
    )
    result_headers: list[str] = Field(
        default=["content-type"],
        description="Response headers to put in the result (case-insensitive); "
        "missing ones are left out.",
    )
    max_body_bytes: int = Field(
        default=65_536,
        ge=1,
        le=MAX_BODY_BYTES,
        description="Most bytes of the response body to read and keep; "
        "a longer body is cut and the result says truncated.",
    )
    follow_redirects: bool = Field(
        default=True,
        description="Follow 3xx redirects; when false, a 3xx not in accept_status fails the job.",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https"):
            scheme = f"scheme {url.scheme!r}" if url.scheme else "no scheme"
            raise ValueError(f"only http:// and https:// URLs are supported, got {scheme}")
        if not url.host:
            raise ValueError("the URL has no host")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _header_value(name, raw) for name, raw in value.items()}

    @field_validator("secret_headers")
    @classmethod
    def _check_secret_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return {
            name: SecretStr(_header_value(name, secret.get_secret_value()))
            for name, secret in value.items()
        }

    @field_validator("result_headers")
    @classmethod
    def _normalise_result_headers(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_header_name(name)
        return list(dict.fromkeys(name.lower() for name in value))

    @model_validator(mode="after")
    def _one_body(self) -> RequestPayload:
        if self.json_body is not None and self.text is not None:
            raise ValueError("give the body as either json or text, not both")
        return self

    @model_validator(mode="after")
    def _each_header_once(self) -> RequestPayload:
        plain = {name.lower() for name in self.headers}
        both = sorted(name for name in self.secret_headers if name.lower() in plain)
        if both:
            raise ValueError(
                f"header {both[0]!r} is in both headers and secret_headers; give it once"
            )
        return self


def _header_value(name: str, raw: str) -> str:
    """``raw`` as it is sent; the message names the header, never the value (it may be
    a secret)."""
    _check_header_name(name)
    if not _HEADER_VALUE.fullmatch(raw):
        raise ValueError(f"header {name!r} has a value with a non-ASCII or control character")
    # HTTP ignores whitespace around a value, and h11 refuses to send it.
    return raw.strip(" \t")


def _check_header_name(name: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
        )
