"""A typed Python client of the orchestrator's REST API, for services that submit jobs.

Importing it loads httpx and the orchestrator's exception tree, not the servers'
stack (no Redis, Celery or FastAPI). :class:`Client` blocks; :class:`AsyncClient` is the
same client for asyncio, awaited::

    from orchestrator_client import Client

    with Client("http://localhost:8000", api_key="...") as client:
        job = client.submit("demo.echo", {"message": "hi"})
        done = client.wait(job["id"], on_update=print)
"""

from orchestrator_client.async_client import AsyncClient
from orchestrator_client.client import Client
from orchestrator_client.stream import ServerEvent, parse_event_stream
from orchestrator_core.exceptions import ApiError, WaitTimeoutError

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ServerEvent",
    "WaitTimeoutError",
    "parse_event_stream",
]
