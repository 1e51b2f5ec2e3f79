"""Builds the FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

import anyio.to_thread
from fastapi import FastAPI

from api import errors, openapi
from api.limits import BodyLimit
from api.routes import auth, events, health, job_types, jobs, metrics, states, submissions
from api.routes import plugins as plugin_report
from api.routes import reference as api_reference
from api.routes import schedules as cron_schedules
from api.routes import ui as dashboard
from api.shutdown import ending_streams
from api.state import ApiState
from api.timing import RequestTiming
from orchestrator_core import Plugins, Settings, load_plugins, load_settings


def create_app(settings: Settings | None = None, *, plugins: Plugins | None = None) -> FastAPI:
    """The control plane for ``settings`` (default: from the environment) and ``plugins``
    (default: the installed ones, honouring the allow-list)."""
    settings = settings or load_settings()
    plugins = plugins or load_plugins(allow=settings.plugins)
    state = ApiState.build(settings, plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The limiter belongs to this event loop, so it is sized once the loop runs.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        await anyio.to_thread.run_sync(state.store.log_eviction_warning)
        async with ending_streams(state.fanout):
            yield
        await anyio.to_thread.run_sync(state.submitter.close)
        state.publisher.close()
        state.readiness.close()
        state.store.redis.close()

    app = FastAPI(
        title="orchestrator",
        version=metadata.version("orchestrator"),
        description="Submit, follow and cancel jobs of the installed job types.",
        lifespan=lifespan,
        # A job id of "/" (or any path with a slash too many) is no job: 404, never a
        # redirect to some other route.
        redirect_slashes=False,
        # Served by api/routes/reference.py instead: the document needs a key once keys
        # are set, and the pages load their scripts from here, not from a CDN.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = state
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    app.add_middleware(RequestTiming, histogram=state.metrics.requests)  # outermost: sees all
    app.include_router(submissions.router)
    app.include_router(jobs.router)
    app.include_router(cron_schedules.router)
    app.include_router(events.router)
    app.include_router(job_types.router)
    app.include_router(states.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(plugin_report.router)
    app.include_router(auth.router)
    app.include_router(api_reference.router)
    app.include_router(dashboard.router)
    errors.install(app)
    openapi.install(app, state.submissions)
    return app
