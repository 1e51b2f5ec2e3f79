"""The ``container.run`` payload: defaults, limits and the checks made before Docker sees it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from orchestrator_container import ContainerRunPayload
from orchestrator_container.payload import memory_bytes
from pydantic import ValidationError


def test_defaults_run_offline_with_no_limits_and_never_pull() -> None:
    payload = ContainerRunPayload(image="localhost/tools:1")
    assert payload.command is None
    assert payload.env == {}
    assert payload.working_dir is None
    assert (payload.memory, payload.memory_bytes) == (None, None)
    assert (payload.cpus, payload.nano_cpus) == (None, None)
    assert payload.network_mode == "none"
    assert (payload.privileged, payload.cap_add, payload.devices) == (False, [], [])
    assert payload.timeout is None
    assert payload.stop_grace == 5
    assert payload.tail_lines == 100
    assert payload.pull is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("100b", 100),
        ("512k", 512 * 1024),
        ("256m", 256 * 1024**2),
        ("64MB", 64 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1gb", 1024**3),
    ],
)
def test_memory_sizes_use_dockers_binary_units(text: str, expected: int) -> None:
    assert memory_bytes(text) == expected
    assert ContainerRunPayload(image="x", memory=text).memory_bytes == expected


def test_cpus_map_to_nano_cpus() -> None:
    assert ContainerRunPayload(image="x", cpus=0.5).nano_cpus == 500_000_000
    assert ContainerRunPayload(image="x", cpus=64).nano_cpus == 64_000_000_000
    assert ContainerRunPayload(image="x", cpus=0.001).nano_cpus == 1_000_000


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"image": ""},
        {"image": "x", "memroy": "1g"},
        {"image": "x", "command": []},
        {"image": "x", "command": "echo hi"},
        {"image": "x", "memory": "0"},
        {"image": "x", "memory": "12x"},
        {"image": "x", "memory": "1.5g"},
        {"image": "x", "memory": "-1m"},
        {"image": "x", "memory": "1bb"},
        {"image": "x", "cpus": 0},
        {"image": "x", "cpus": 64.5},
        {"image": "x", "cpus": float("nan")},
        {"image": "x", "timeout": 0},
        {"image": "x", "timeout": 86_401},
        {"image": "x", "timeout": float("inf")},
        {"image": "x", "stop_grace": -1},
        {"image": "x", "stop_grace": 301},
        {"image": "x", "tail_lines": 0},
        {"image": "x", "tail_lines": 10_001},
        {"image": "x", "working_dir": "relative/dir"},
        {"image": "x", "env": {"": "v"}},
        {"image": "x", "env": {"A=B": "v"}},
        {"image": "x", "env": {"A": "nul\x00"}},
        {"image": "x", "env": {"A": 1}},
        {"image": "x", "network_mode": ""},
        {"image": "x", "cap_add": ["NET ADMIN"]},
        {"image": "x", "cap_add": "NET_ADMIN"},
        {"image": "x", "devices": ["dev/fuse"]},
        {"image": "x", "devices": ["/dev/sda:/dev/xvda:rwx"]},
        {"image": "x", "devices": ["/dev/sda:relative"]},
    ],
)
def test_bad_payloads_are_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ContainerRunPayload.model_validate(data)


def test_the_memory_error_says_what_is_expected() -> None:
    with pytest.raises(ValidationError, match=r"followed by k, m or g \(e\.g\. '256m'\)"):
        ContainerRunPayload(image="x", memory="lots")


def test_every_field_is_described_in_the_schema() -> None:
    properties = ContainerRunPayload.model_json_schema()["properties"]
    assert set(properties) == {
        "image",
        "command",
        "env",
        "working_dir",
        "memory",
        "cpus",
        "network_mode",
        "privileged",
        "cap_add",
        "devices",
        "timeout",
        "stop_grace",
        "tail_lines",
        "pull",
    }
    for name, schema in properties.items():
        assert schema.get("description"), name


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"network_mode": "host"},
            "network_mode",
            "ORCHESTRATOR_CONTAINER_ALLOW_HOST_NETWORK=true",
        ),
        ({"privileged": True}, "privileged", "ORCHESTRATOR_CONTAINER_ALLOW_PRIVILEGED=true"),
        ({"cap_add": ["sys_admin"]}, "cap_add", "adding capabilities (SYS_ADMIN)"),
        ({"devices": ["/dev/mem"]}, "devices", "the machine's devices"),
    ],
    ids=["host-network", "privileged", "capabilities", "devices"],
)
def test_what_the_settings_do_not_allow_is_refused_naming_the_setting(
    data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ContainerRunPayload.model_validate({"image": "x", **data})

    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]
    assert "refused unless the worker's operator sets ORCHESTRATOR_CONTAINER_ALLOW_" in error["msg"]


def test_the_host_network_setting_allows_host_mode_only(allow: Callable[..., None]) -> None:
    allow(host_network=True)

    assert ContainerRunPayload(image="x", network_mode="host").network_mode == "host"
    with pytest.raises(ValidationError, match="ALLOW_PRIVILEGED"):
        ContainerRunPayload.model_validate({"image": "x", "privileged": True})


def test_the_privileged_setting_allows_privileged_capabilities_and_devices(
    allow: Callable[..., None],
) -> None:
    allow(privileged=True)

    payload = ContainerRunPayload.model_validate(
        {
            "image": "x",
            "privileged": True,
            "cap_add": ["net_admin", "CAP_SYS_PTRACE"],
            "devices": ["/dev/fuse", "/dev/sda:/dev/xvda:rw"],
        }
    )

    assert payload.privileged is True
    assert payload.cap_add == ["NET_ADMIN", "SYS_PTRACE"]
    assert payload.devices == ["/dev/fuse", "/dev/sda:/dev/xvda:rw"]
    with pytest.raises(ValidationError, match="ALLOW_HOST_NETWORK"):
        ContainerRunPayload(image="x", network_mode="host")


def test_other_network_modes_need_no_setting() -> None:
    for mode in ("none", "bridge", "my-network", "container:abc123"):
        assert ContainerRunPayload(image="x", network_mode=mode).network_mode == mode
