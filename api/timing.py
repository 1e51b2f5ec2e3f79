"""Request latency, observed by a pure ASGI middleware (no buffering, no extra task)."""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

UNMATCHED = "unmatched"
"""The route label of a request no route took (a 404 by path, a redirect, a 413 sent
before routing): raw paths would give every scanner's probe a series of its own."""


class RequestTiming:
    """Observes each HTTP request into ``histogram`` by method, route template (e.g.
    ``/jobs/{job_id}``, never the raw path) and status.

    The clock stops when the response starts, not when its body ends: a stream of
    server-sent events would otherwise count as one request lasting minutes. An
    exception that escapes before any response counts as a 500, which is what the
    server then sends.
    """

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        responded = False

        async def timed(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start" and not responded:
                responded = True
                self._observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        except Exception:
            if not responded:
                self._observe(scope, 500, time.perf_counter() - started)
            raise

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "other"
        # The router records the route it matched in the scope, which it shares with us.
        route = getattr(scope.get("route"), "path", None)
        label = route if isinstance(route, str) else UNMATCHED
        self.histogram.labels(method, label, str(status)).observe(seconds)
