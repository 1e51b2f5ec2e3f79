"""Request body limit, enforced before the body is read and while it streams in."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator_core.exceptions import BodyTooLargeError


class BodyLimit:
    """Refuses a declared ``Content-Length`` over the limit at once with 413, and stops a
    chunked (or lying) body as soon as it runs over by raising :class:`BodyTooLargeError`
    from ``receive``, which the error handlers turn into 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send, self.max_bytes, malformed=not declared.isdigit())
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def _too_large(send: Send, limit: int, *, malformed: bool) -> None:
    status = 400 if malformed else 413
    detail = "malformed Content-Length" if malformed else f"request body is over {limit} bytes"
    body = b'{"detail":"' + detail.encode() + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
