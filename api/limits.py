"""Request body limits, enforced before the application sees the body: its size and, for
JSON, how deeply it nests.

The body is read here, whole (it is at most ``max_bytes``, and every route that takes
one reads it whole anyway), so that a body over a limit is answered here, with a clear
detail, for every route alike: a route whose body FastAPI parses would otherwise turn
an error raised while reading into its own generic 400.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.nesting import nested_deeper_than
from orchestrator_core.exceptions import BodyTooLargeError


class BodyLimit:
    """Refuses a declared ``Content-Length`` over ``max_bytes`` at once with 413, and a
    chunked (or lying) body as soon as it runs over; refuses a JSON body (or one with
    no ``Content-Type``, which FastAPI reads as JSON) nested deeper than ``max_depth``
    with 400, before anything parses it. A request with no body passes untouched."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: GETs, event streams
            return
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            if declared.isdigit():
                await _refuse(send, 413, str(BodyTooLargeError(self.max_bytes)))
            else:
                await _refuse(send, 400, "malformed Content-Length")
            return
        try:
            message = await self._read(receive)
        except BodyTooLargeError as exc:
            await _refuse(send, 413, str(exc))
            return
        if (
            message["type"] == "http.request"
            and _is_json(headers.get(b"content-type"))
            and nested_deeper_than(message["body"], self.max_depth)
        ):
            detail = (
                f"the JSON body nests deeper than {self.max_depth} levels of arrays and objects"
            )
            await _refuse(send, 400, detail)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # only ``http.disconnect`` comes after the body
            replayed = True
            return message

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> Message:
        """The whole body as one ``http.request`` message; or the ``http.disconnect`` of a
        client that left before sending it all, for the application to notice.

        :raises BodyTooLargeError: the body runs over ``max_bytes``.
        """
        message = await receive()
        if message["type"] != "http.request":
            return message
        if not message.get("more_body", False):
            message.setdefault("body", b"")
            if len(message["body"]) > self.max_bytes:
                raise BodyTooLargeError(self.max_bytes)
            return message
        chunks = [message.get("body", b"")]
        size = len(chunks[0])
        while True:
            if size > self.max_bytes:
                raise BodyTooLargeError(self.max_bytes)
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                if size > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


def _is_json(content_type: bytes | None) -> bool:
    """``application/json``, any ``+json`` type, or none given."""
    return content_type is None or b"json" in content_type.partition(b";")[0].lower()


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of a refused body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
