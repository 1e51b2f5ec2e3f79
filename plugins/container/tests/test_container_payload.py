"""The ``container.run`` payload: defaults, limits and the checks made before Docker sees it."""

from __future__ import annotations

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
        "timeout",
        "stop_grace",
        "tail_lines",
        "pull",
    }
    for name, schema in properties.items():
        assert schema.get("description"), name
