from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pluggy
import pytest

import orchestrator_core
from orchestrator_core import JobType, hookimpl, hookspec, hookspecs


def specs() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspec.project_name}_spec"
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, marker)
    }


def test_markers_use_the_project_name() -> None:
    assert hookspec.project_name == hookimpl.project_name == "orchestrator"
    assert orchestrator_core.hookimpl is hookspecs.hookimpl


def test_the_contract_hooks_exist() -> None:
    assert set(specs()) == {"register_job_types", "job_transitioned"}
    assert list(inspect.signature(specs()["job_transitioned"]).parameters) == [
        "job",
        "old_state",
        "new_state",
    ]
    assert not inspect.signature(specs()["register_job_types"]).parameters


@pytest.mark.parametrize("name", sorted(specs()))
def test_hookspec_docstring_is_a_reference(name: str) -> None:
    spec = specs()[name]
    doc = inspect.getdoc(spec)
    assert doc, f"{name} has no docstring"
    summary, _, body = doc.partition("\n\n")
    assert "\n" not in summary
    assert summary.endswith(".")
    documented = re.findall(r":param (\w+):", body)
    assert documented == list(inspect.signature(spec).parameters)
    assert ":return:" in body
    assert "Called" in body, "say when the hook is called"


@pytest.mark.parametrize("name", sorted(specs()))
def test_hookspec_is_fully_typed(name: str) -> None:
    hints = inspect.get_annotations(specs()[name], eval_str=True)
    assert "return" in hints
    assert set(hints) - {"return"} == set(inspect.signature(specs()[name]).parameters)


def test_a_plugin_written_against_the_specs_is_called() -> None:
    manager = pluggy.PluginManager(hookspec.project_name)
    manager.add_hookspecs(hookspecs)

    class Plugin:
        @hookimpl
        def register_job_types(self) -> list[JobType]:
            return []

    manager.register(Plugin())
    manager.check_pending()
    assert manager.hook.register_job_types() == [[]]
