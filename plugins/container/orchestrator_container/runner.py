"""One attempt of ``container.run``: create, start, wait, collect the logs, always remove."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from orchestrator_container.exceptions import (
    ContainerFailed,
    ContainerTimeoutError,
    EngineError,
    EngineUnavailableError,
)
from orchestrator_container.host_access import HOST_NETWORK_SETTING, host_access
from orchestrator_container.payload import ContainerRunPayload
from orchestrator_core import CancellationToken, PermanentError

logger = logging.getLogger(__name__)

CLIENT_TIMEOUT = 30
"""Seconds the client waits for any one engine request; a stop adds its grace to this."""

LABEL_JOB = "orchestrator.job"
"""Every container is labelled with the job id, so a leftover can be traced to its job."""
LABEL_ATTEMPT = "orchestrator.attempt"
LABEL_JOB_TYPE = "orchestrator.job-type"
JOB_TYPE = "container.run"

POLL_FIRST = 0.05
POLL_MAX = 0.5
"""Status polls start fast for short commands and slow down for long ones; a cancel or
timeout does not wait for the next poll, since the token wakes the wait at once."""

FINISHED = frozenset({"exited", "dead"})

OWN_NETWORK_MODES = frozenset({"none", "bridge", "default"})
"""Network modes that give the container a namespace of its own (or none)."""

MAX_CONTAINER_HOPS = 10
"""How many ``container:<id>`` modes in a row are followed to the network they share."""

MAX_LOG_CHARS = 1_000_000
"""The returned log tail keeps at most this many of its last characters (it is stored
on the job)."""
MESSAGE_LOG_CHARS = 1500
"""Error messages quote at most this many characters of the log tail (they are cut at 2000)."""


def run_container(payload: ContainerRunPayload, token: CancellationToken) -> dict[str, Any]:
    """Run a command in a new Docker container and return its exit code and the tail of its logs.

    The container gets the payload's limits, no network unless asked, and the label
    ``orchestrator.job=<job id>``; it is removed afterwards, whatever happened. A cancel,
    the job's timeout or the payload's ``timeout`` stops it (SIGTERM, then SIGKILL after
    ``stop_grace``). A non-zero exit fails the attempt, which may be retried; a missing
    image (with ``pull`` off) or parameters the engine rejects fail the job for good, and
    so does a network that turns out to be the host's when the settings do not allow it.
    The engine is found through ``DOCKER_HOST`` and the other ``DOCKER_*`` variables.
    """
    token.raise_if_cancelled()
    with _connect() as client:
        if payload.pull:
            with _translate_errors(payload, "pull the image", rejected_is_permanent=True):
                _ensure_image(client, payload.image)
        with _translate_errors(payload, "create the container", rejected_is_permanent=True):
            container = _create(client, payload, token)
        try:
            with _translate_errors(payload, "start the container", rejected_is_permanent=True):
                container.start()
            token.report_progress(message=f"container {container.short_id} running")
            with _translate_errors(payload, "run the container", rejected_is_permanent=False):
                exit_code = _wait(container, payload, token)
                logs = _tail(container, payload.tail_lines)
        finally:
            _remove(container)
    if exit_code != 0:
        raise ContainerFailed(
            _failure_message(container, payload.image, exit_code, logs),
            exit_code=exit_code,
            logs=logs,
            image=payload.image,
            container_id=container.short_id,
        )
    return {
        "exit_code": exit_code,
        "logs": logs,
        "image": payload.image,
        "container_id": container.short_id,
    }


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "the default socket (DOCKER_HOST is not set)"


@contextlib.contextmanager
def _connect() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT)
    except docker.errors.DockerException as exc:
        raise EngineUnavailableError(
            f"cannot reach the Docker engine at {_docker_host()}: {exc}",
            docker_host=_docker_host(),
        ) from exc
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _translate_errors(
    payload: ContainerRunPayload, doing: str, *, rejected_is_permanent: bool
) -> Iterator[None]:
    """Turn docker SDK errors into a permanent error or one of this plugin's retryable ones.

    :param doing: what was being done, for the message ("create the container").
    :param rejected_is_permanent: whether a 4xx answer means the request itself is wrong
        (pulling, creating, starting); later, a 4xx means the container went away under us.
    """
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        if payload.pull:
            raise PermanentError(
                f"image {payload.image!r} was not found: {exc.explanation}"
            ) from exc
        raise PermanentError(
            f"image {payload.image!r} is not on the Docker engine and pull is false; "
            "load or build it there first, or set pull to true"
        ) from exc
    except docker.errors.APIError as exc:
        # Before RequestException, which APIError also is.
        if rejected_is_permanent and exc.is_client_error():
            raise PermanentError(
                f"the Docker engine refused to {doing} for image {payload.image!r} "
                f"({exc.status_code}): {exc.explanation}"
            ) from exc
        raise EngineError(
            f"the Docker engine failed to {doing} ({exc.status_code}): {exc.explanation}",
            status_code=exc.status_code,
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise EngineUnavailableError(
            f"lost the Docker engine at {_docker_host()} trying to {doing}: {exc}",
            docker_host=_docker_host(),
        ) from exc
    except docker.errors.DockerException as exc:
        raise EngineError(f"the docker client failed to {doing}: {exc}") from exc


def _ensure_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        logger.info("pulling image %s", image)
        client.images.pull(image)


def _create(
    client: docker.DockerClient, payload: ContainerRunPayload, token: CancellationToken
) -> Container:
    if not host_access().host_network:
        _refuse_the_host_network(client, payload.network_mode)
    return client.containers.create(
        payload.image,
        payload.command,
        detach=True,
        environment=[f"{name}={value}" for name, value in payload.env.items()],
        working_dir=payload.working_dir,
        mem_limit=payload.memory_bytes,
        nano_cpus=payload.nano_cpus,
        network_mode=payload.network_mode,
        privileged=payload.privileged,
        cap_add=payload.cap_add or None,
        devices=payload.devices or None,
        labels={
            LABEL_JOB: token.job_id,
            LABEL_ATTEMPT: str(token.attempt),
            LABEL_JOB_TYPE: JOB_TYPE,
        },
    )


def _refuse_the_host_network(client: docker.DockerClient, network_mode: str) -> None:
    """Raise PermanentError when ``network_mode`` comes down to the host's network.

    The payload refuses ``host`` by name; the same network can also be named by its id,
    or shared through ``container:<id>`` of a container on it, which only the engine
    knows. What the engine cannot find is left to it to refuse.
    """
    mode, path = network_mode, []
    for _ in range(MAX_CONTAINER_HOPS):
        if mode in OWN_NETWORK_MODES:
            return
        if mode == "host":
            break
        if mode.startswith("container:"):
            reference = mode.partition(":")[2]
            try:
                other = client.containers.get(reference)
            except docker.errors.NotFound:
                return
            path.append(f"container {reference} is on {other.attrs['HostConfig']['NetworkMode']!r}")
            mode = other.attrs["HostConfig"]["NetworkMode"]
            continue
        try:
            network = client.networks.get(mode)
        except docker.errors.NotFound:
            return
        if network.attrs.get("Driver") != "host":
            return
        path.append(f"network {mode!r} is the host's (driver 'host')")
        break
    else:
        return  # a longer chain of containers than anyone builds: the engine decides
    raise PermanentError(
        f"network_mode {network_mode!r} shares the worker machine's network"
        f"{' (' + '; '.join(path) + ')' if path else ''}; it is refused unless the "
        f"worker's operator sets {HOST_NETWORK_SETTING}=true"
    )


def _wait(container: Container, payload: ContainerRunPayload, token: CancellationToken) -> int:
    """Wait for the container to exit and return its exit code; stop it and raise on cancel."""
    started = time.monotonic()
    deadline = None if payload.timeout is None else started + payload.timeout
    interval = POLL_FIRST
    while True:
        container.reload()
        state: dict[str, Any] = container.attrs["State"]
        if container.status in FINISHED:
            if container.status == "dead":
                reason = state.get("Error") or "no reason given"
                raise EngineError(f"container {container.short_id} ended dead: {reason}")
            return int(state["ExitCode"])
        if token.cancelled:
            _stop(container, payload.stop_grace)
            token.raise_if_cancelled()
        if deadline is None:
            token.wait(interval)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                _stop(container, payload.stop_grace)
                raise _timed_out(container, payload, deadline - started)
            token.wait(min(interval, left))
        interval = min(interval * 2, POLL_MAX)


def _stop(container: Container, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace``; a failure is left to the forced removal."""
    logger.info("stopping container %s (grace %s s)", container.short_id, grace)
    try:
        container.stop(timeout=math.ceil(grace))
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        logger.warning(
            "could not stop container %s; removing it by force", container.short_id, exc_info=True
        )


def _timed_out(
    container: Container, payload: ContainerRunPayload, timeout: float
) -> ContainerTimeoutError:
    logs = _tail(container, payload.tail_lines)
    message = (
        f"container {container.short_id} ({payload.image}) ran past the payload's "
        f"{timeout:g} s timeout and was stopped{_quote(logs)}"
    )
    return ContainerTimeoutError(
        message, timeout=timeout, logs=logs, container_id=container.short_id
    )


def _tail(container: Container, lines: int) -> str:
    raw = container.logs(stdout=True, stderr=True, tail=lines)
    return raw.decode("utf-8", errors="replace")[-MAX_LOG_CHARS:]


def _remove(container: Container) -> None:
    """Remove the container, running or not; never raise, so the attempt's own outcome stands."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        logger.error(
            "could not remove container %s (label %s=%s); remove it by hand",
            container.short_id,
            LABEL_JOB,
            container.labels.get(LABEL_JOB, "?"),
            exc_info=True,
        )


def _failure_message(container: Container, image: str, exit_code: int, logs: str) -> str:
    oom = ""
    if container.attrs.get("State", {}).get("OOMKilled"):
        oom = ", killed for running out of memory"
    return (
        f"container {container.short_id} ({image}) exited with code {exit_code}{oom}{_quote(logs)}"
    )


def _quote(logs: str) -> str:
    """The last lines of ``logs`` for an error message, or a note that there were none."""
    text = logs.rstrip("\n")
    if not text:
        return "; it wrote no logs"
    if len(text) > MESSAGE_LOG_CHARS:
        text = text[-MESSAGE_LOG_CHARS:]
        # Start at a line boundary when there is one, so the first line is not cut.
        newline = text.find("\n")
        if 0 <= newline < len(text) - 1:
            text = text[newline + 1 :]
        text = "...\n" + text
    return f"; last lines of its logs:\n{text}"
