"""``ContainerRunPayload``: what a ``container.run`` job asks for, checked before Docker sees it."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator_container.host_access import (
    HOST_NETWORK_SETTING,
    PRIVILEGED_SETTING,
    host_access,
)

MEMORY_PATTERN = re.compile(r"([0-9]+)(?:([kmg])b?|b)?", re.IGNORECASE)
"""A memory size the way Docker writes it: bytes, or a number with a k, m or g suffix."""

MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

ENV_NAME_PATTERN = re.compile(r"[^=\x00]+")

CAPABILITY_PATTERN = re.compile(r"(?:CAP_)?([A-Z_]+)", re.IGNORECASE)
"""A Linux capability as Docker takes it: ``NET_ADMIN`` or ``CAP_NET_ADMIN`` (or ``ALL``)."""

DEVICE_PATTERN = re.compile(r"(/[^:\x00]*)(?::(/[^:\x00]*))?(?::([rwm]{1,3}))?")
"""A device as Docker takes it: ``/dev/host[:/dev/container[:permissions]]``."""

HOST_NAMESPACE_MODES = ("host",)
"""Network modes that are the machine's own network."""


class ContainerRunPayload(BaseModel):
    """Payload of ``container.run``."""

    # Forbidden extras turn a misspelt field into a validation error instead of a default.
    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        min_length=1,
        max_length=1000,
        description="Image to run, e.g. 'localhost/tools:1.2'. It must already be on the "
        "engine unless `pull` is true.",
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Command and arguments (no shell involved); None runs the image's CMD.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables set in the container."
    )
    working_dir: str | None = Field(
        default=None,
        description="Absolute path the command starts in; created if missing. "
        "None keeps the image's.",
    )
    memory: str | None = Field(
        default=None,
        description="Memory limit: bytes, or a number with a k, m or g suffix ('256m'). "
        "None sets no limit.",
    )
    cpus: float | None = Field(
        default=None,
        gt=0,
        le=64,
        allow_inf_nan=False,
        description="CPU limit in cores (0.5 is half a core); None sets no limit.",
    )
    network_mode: str = Field(
        default="none",
        min_length=1,
        max_length=300,
        description="Docker network mode: 'none' (no network, the default), 'bridge', "
        "'container:<id>' or a network's name; 'host' (or a network or container that is "
        "on the host's network) only where the worker's operator allows it.",
    )
    privileged: bool = Field(
        default=False,
        description="Run the container privileged (every capability, the machine's "
        "devices); refused unless the worker's operator allows it.",
    )
    cap_add: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Linux capabilities to add to Docker's default set ('NET_ADMIN'); "
        "refused unless the worker's operator allows privileged containers.",
    )
    devices: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Devices of the machine to give the container "
        "('/dev/host[:/dev/container[:rwm]]'); refused unless the worker's operator allows "
        "privileged containers.",
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds the container may run before it is stopped and the attempt "
        "fails (and may be retried); None waits as long as the job may run.",
    )
    stop_grace: float = Field(
        default=5.0,
        ge=0,
        le=300,
        allow_inf_nan=False,
        description="Seconds between SIGTERM and SIGKILL when the container is stopped "
        "(cancel or timeout); rounded up to whole seconds, the engine's unit.",
    )
    tail_lines: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="How many of the last lines of stdout and stderr to return.",
    )
    pull: bool = Field(
        default=False,
        description="Pull the image when it is not on the engine; false never pulls, and a "
        "missing image fails the job at once.",
    )

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not MEMORY_PATTERN.fullmatch(value) or memory_bytes(value) == 0:
            raise ValueError(
                "memory must be a positive number of bytes, optionally followed by "
                f"k, m or g (e.g. '256m'), got {value!r}"
            )
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME_PATTERN.fullmatch(name):
                raise ValueError(f"env names must be non-empty, without '=' or NUL: {name!r}")
            if "\x00" in text:
                raise ValueError(f"env value of {name!r} contains a NUL character")
        return value

    @field_validator("network_mode")
    @classmethod
    def _check_network_mode(cls, value: str) -> str:
        if value in HOST_NAMESPACE_MODES and not host_access().host_network:
            raise ValueError(
                f"network_mode {value!r} shares the worker machine's network (and every "
                "service listening on its loopback) with the container; it is refused unless "
                f"the worker's operator sets {HOST_NETWORK_SETTING}=true"
            )
        return value

    @field_validator("privileged")
    @classmethod
    def _check_privileged(cls, value: bool) -> bool:
        if value:
            _require_privileged("privileged mode")
        return value

    @field_validator("cap_add")
    @classmethod
    def _check_cap_add(cls, value: list[str]) -> list[str]:
        names = []
        for name in value:
            match = CAPABILITY_PATTERN.fullmatch(name)
            if match is None:
                raise ValueError(f"{name!r} is not a capability name such as 'NET_ADMIN'")
            names.append(match[1].upper())
        if names:
            _require_privileged(f"adding capabilities ({', '.join(names)})")
        return names

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: list[str]) -> list[str]:
        for device in value:
            if DEVICE_PATTERN.fullmatch(device) is None:
                raise ValueError(
                    f"{device!r} is not a device such as '/dev/fuse' or "
                    "'/dev/sda:/dev/xvda:rw' (absolute paths, permissions of r, w and m)"
                )
        if value:
            _require_privileged("giving the container the machine's devices")
        return value

    @field_validator("working_dir")
    @classmethod
    def _check_working_dir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"working_dir must be an absolute path, got {value!r}")
        return value

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes, or None for no limit."""
        return None if self.memory is None else memory_bytes(self.memory)

    @property
    def nano_cpus(self) -> int | None:
        """The CPU limit in billionths of a core, Docker's unit, or None for no limit."""
        return None if self.cpus is None else round(self.cpus * 1_000_000_000)


def _require_privileged(what: str) -> None:
    if not host_access().privileged:
        raise ValueError(
            f"{what} would let the container take over the worker's machine; it is "
            f"refused unless the worker's operator sets {PRIVILEGED_SETTING}=true"
        )


def memory_bytes(value: str) -> int:
    """Convert a size such as ``"256m"`` or ``"1g"`` to bytes (binary units, as Docker does).

    :raises ValueError: if ``value`` is not such a size.
    """
    match = MEMORY_PATTERN.fullmatch(value)
    if match is None:
        raise ValueError(f"not a memory size: {value!r}")
    digits, unit = match.groups()
    return int(digits) * MEMORY_UNITS[(unit or "").lower()]
