"""The ``container.run`` job type: run a command in a Docker container with limits.

Registered through the ``container`` entry point (``orchestrator_container.plugin``);
importing this package registers nothing. The payload model and the exceptions are
re-exported for callers that build payloads or catch failures.
"""

from orchestrator_container.exceptions import (
    ContainerFailed,
    ContainerRunError,
    ContainerTimeoutError,
    EngineError,
    EngineUnavailableError,
)
from orchestrator_container.payload import ContainerRunPayload

__all__ = [
    "ContainerFailed",
    "ContainerRunError",
    "ContainerRunPayload",
    "ContainerTimeoutError",
    "EngineError",
    "EngineUnavailableError",
]
