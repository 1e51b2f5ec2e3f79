"""The execute function of ``http.request``: one request, raced against the job's token."""

from __future__ import annotations

import asyncio
import codecs
import json
import math
from typing import Any, NoReturn

import httpx
from pydantic import JsonValue

from orchestrator_core import AddressRefusedError, CancellationToken, PermanentError
from orchestrator_http.errors import RequestError, ServerError, TryLaterError
from orchestrator_http.outbound import outbound
from orchestrator_http.payload import RequestPayload

TRY_LATER = frozenset({408, 429})
"""4xx statuses that ask the client to retry later: retried like a 5xx, not failed for good."""

EXCERPT_BYTES = 1024
"""Most bytes of a rejected response's body read to quote in the error."""

EXCERPT_CHARS = 200
"""Most characters of that body quoted in the error message."""

# No retry mends these: a redirect loop, a redirect to a non-HTTP URL, a request
# that httpx refuses to send.
_PERMANENT = (httpx.TooManyRedirects, httpx.UnsupportedProtocol, httpx.LocalProtocolError)


async def http_request(payload: RequestPayload, token: CancellationToken) -> dict[str, Any]:
    """Send one HTTP request; return its status, selected headers and body.

    The result is ``{"status", "headers", "body", "truncated"}``. ``headers`` holds
    those of ``result_headers`` the response has, by lowercase name. At most
    ``max_body_bytes`` of the body are read, and ``truncated`` says whether it was cut;
    ``body`` is the parsed JSON when the response is JSON and was kept whole, else text
    decoded with the response's charset (UTF-8 by default, bad bytes replaced).

    A status outside ``accept_status`` (default: any 2xx) fails the attempt: a 5xx is
    retried, any other status fails the job for good. Connection errors, timeouts and
    protocol errors are retried. A host that resolves to a loopback, private, link-local
    or otherwise internal address fails the job before anything connects, for the URL
    and for every redirect, unless ``ORCHESTRATOR_HTTP_ALLOW_NETWORKS`` allows it.
    Cancelling the job aborts the request at once and closes its connection.
    """
    exchange = asyncio.create_task(_exchange(payload))
    fired = asyncio.create_task(token.wait_async(math.inf))
    try:
        await asyncio.wait({exchange, fired}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _stop(fired)
        if not exchange.done():
            await _stop(exchange)
    if exchange.cancelled():  # stopped above because the token fired
        token.raise_if_cancelled()
    return exchange.result()


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has unwound (httpx closes its connection then)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark it retrieved: nobody wants an exception of a stopped task


async def _exchange(payload: RequestPayload) -> dict[str, Any]:
    url = _without_credentials(payload.url)
    # httpx's timeout bounds each phase (connect, each read, ...); this one bounds the
    # whole exchange, so a server trickling bytes cannot hold the job forever.
    try:
        async with asyncio.timeout(payload.timeout):
            return await _send(payload, url)
    except TimeoutError as exc:
        raise RequestError(
            f"{payload.method} {url} timed out: no complete response within {payload.timeout:g} s",
            url=url,
            cause="Timeout",
        ) from exc


async def _send(payload: RequestPayload, url: str) -> dict[str, Any]:
    headers = dict(payload.headers)
    headers.update(
        {name: value.get_secret_value() for name, value in payload.secret_headers.items()}
    )
    content = None
    if payload.text is not None:
        content = payload.text.encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"
    try:
        async with (
            httpx.AsyncClient(
                transport=outbound().transport(),
                timeout=payload.timeout,
                follow_redirects=payload.follow_redirects,
                # No proxies, no .netrc: the guard must see where each request goes.
                trust_env=False,
            ) as client,
            client.stream(
                payload.method,
                payload.url,
                headers=headers,
                content=content,
                json=payload.json_body,
            ) as response,
        ):
            return await _result(payload, response, url)
    except AddressRefusedError as exc:
        raise PermanentError(f"{payload.method} {url} failed: {exc}") from exc
    except _PERMANENT as exc:
        raise PermanentError(f"{payload.method} {url} failed: {_describe(exc)}") from exc
    except httpx.TimeoutException as exc:
        raise RequestError(
            f"{payload.method} {url} timed out after {payload.timeout:g} s ({type(exc).__name__})",
            url=url,
            cause=type(exc).__name__,
        ) from exc
    except httpx.RequestError as exc:
        raise RequestError(
            f"{payload.method} {url} failed: {_describe(exc)}", url=url, cause=type(exc).__name__
        ) from exc


async def _result(payload: RequestPayload, response: httpx.Response, url: str) -> dict[str, Any]:
    status = response.status_code
    if payload.accept_status is None:
        accepted = 200 <= status < 300
    else:
        accepted = status in payload.accept_status
    if not accepted:
        await _reject(payload, response, url)
    data, truncated = await _read(response, payload.max_body_bytes)
    return {
        "status": status,
        "headers": {
            name: response.headers[name]
            for name in payload.result_headers
            if name in response.headers
        },
        "body": _body(response, data, truncated=truncated),
        "truncated": truncated,
    }


async def _reject(payload: RequestPayload, response: httpx.Response, url: str) -> NoReturn:
    status = response.status_code
    message = f"{payload.method} {url} answered {status} {response.reason_phrase}".rstrip()
    if 300 <= status < 400 and not payload.follow_redirects:
        message += " (not followed: follow_redirects is false)"
    data, truncated = await _read(response, EXCERPT_BYTES)
    excerpt = " ".join(_decode(data, response.encoding, final=not truncated).split())
    if len(excerpt) > EXCERPT_CHARS:
        excerpt = excerpt[: EXCERPT_CHARS - 1] + "…"
    if excerpt:
        message += f": {excerpt}"
    if status >= 500:
        raise ServerError(message, status=status, url=url)
    if status in TRY_LATER:
        raise TryLaterError(message, status=status, url=url)
    raise PermanentError(message)


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Read up to ``limit`` bytes of the body, and whether there was more.

    Stops reading at the first chunk past the limit, so at most one network read
    more than ``limit`` is downloaded; leaving the stream early closes the connection.
    """
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False


def _body(response: httpx.Response, data: bytes, *, truncated: bool) -> JsonValue:
    text = _decode(data, response.encoding, final=not truncated)
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if truncated or not (media_type == "application/json" or media_type.endswith("+json")):
        return text
    try:
        # NaN and Infinity are not JSON: such a body could not be stored as the result.
        parsed: JsonValue = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return text  # labelled JSON but is not: keep what was sent
    return parsed


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _decode(data: bytes, encoding: str | None, *, final: bool) -> str:
    """Decode ``data``; when it was cut (``final`` false) a split last character is dropped."""
    # A charset naming a bytes-to-bytes codec (base64, zlib, ...) falls back to UTF-8.
    for candidate in (encoding or "utf-8", "utf-8"):
        try:
            decoder = codecs.getincrementaldecoder(candidate)(errors="replace")
            text = decoder.decode(data, final=final)
        except (LookupError, ValueError, TypeError):
            continue
        if isinstance(text, str):
            return text
    return data.decode("utf-8", errors="replace")


def _describe(exc: Exception) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _without_credentials(url: str) -> str:
    """The URL for messages: a password in it must not end up in the job's error."""
    return str(httpx.URL(url).copy_with(userinfo=b""))
