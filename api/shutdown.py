"""Noticing that the server is stopping, so that open event streams can end first.

uvicorn runs the application's shutdown (the lifespan's end) only after every
connection has closed, and an event stream never closes by itself: without help, a
server with a stream open would wait for its client for ever (or until
``timeout_graceful_shutdown`` cancels it, with errors in the log). The lifespan cannot
see the server's ``should_exit`` flag, which is set by its signal handlers or by whoever
runs it in a thread, so :func:`server_stopping` finds the server that runs the event
loop and watches that flag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from api.fanout import FanOut

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1


async def server_stopping() -> None:
    """Return once the uvicorn server running this event loop has been told to stop.

    Under another server (or none, as in an in-process test client) it never returns;
    streams then end when the lifespan does.
    """
    server = _running_server()
    if server is None:
        await asyncio.Event().wait()
        return
    while not server.should_exit:
        await asyncio.sleep(POLL_SECONDS)


def _running_server() -> uvicorn.Server | None:
    # The loop's main task runs ``Server.serve``; its frame holds the server as ``self``.
    for task in asyncio.all_tasks():
        awaiting: object = task.get_coro()
        while awaiting is not None:
            frame = getattr(awaiting, "cr_frame", None)
            owner = frame.f_locals.get("self") if frame is not None else None
            if isinstance(owner, uvicorn.Server):
                return owner
            awaiting = getattr(awaiting, "cr_await", None)
    return None


@asynccontextmanager
async def ending_streams(fanout: FanOut) -> AsyncIterator[None]:
    """For the app's life: end ``fanout``'s streams as soon as the server is told to stop
    (so that it can), and stop its reader when the app shuts down."""

    async def close_when_stopping() -> None:
        await server_stopping()
        logger.info("the server is stopping: ending %d event stream(s)", fanout.subscribers)
        fanout.close_streams()

    watcher = asyncio.create_task(close_when_stopping())
    try:
        yield
    finally:
        watcher.cancel()
        await fanout.aclose()
