"""The layout holds: which package may import which, and state names written in one place.

The import graph is read from the source with ``ast``, so a forbidden import fails here
even on a line no test runs.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator_core
from orchestrator_core import State
from orchestrator_core.store import script

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator_core", "api", "worker", "cli", "orchestrator_client")

FORBIDDEN: dict[str, set[str]] = {
    "orchestrator_core": {"api", "worker", "cli", "orchestrator_client"},
    "api": {"worker", "cli", "orchestrator_client"},
    "worker": {"api", "cli", "orchestrator_client"},
    "orchestrator_client": {"api", "worker", "cli"},
}
"""Project packages each package must not import. Only ``cli`` (the composition root)
imports both services."""

CONTRACT = {
    "cancellation",
    "exceptions",
    "flow",
    "hookspecs",
    "job_type",
    "models",
    "secret_fields",
    "states",
}
"""The core modules plugin authors build on: they import nothing of the core but each other."""

SERVER_STACK = {"redis", "celery", "kombu", "amqp", "fastapi", "starlette", "uvicorn"}


def modules(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every Python file below ``folder`` and its dotted module name (from ROOT)."""
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(line, imported module, names taken from it)`` for each import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, target] if target else base)
            yield node.lineno, target, tuple(alias.name for alias in node.names)


def root_of(name: str) -> str:
    return name.split(".")[0]


def test_the_import_graph_has_no_upward_or_sideways_arrow() -> None:
    found = []
    for package, forbidden in FORBIDDEN.items():
        for path, module in modules(ROOT / package):
            for line, target, _ in imported(path, module):
                if root_of(target) in forbidden:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert found == []


def test_the_contract_modules_import_only_each_other() -> None:
    found = []
    for name in sorted(CONTRACT):
        path = ROOT / "orchestrator_core" / f"{name}.py"
        for line, target, _ in imported(path, f"orchestrator_core.{name}"):
            inside = target.split(".")[1:2]
            if root_of(target) == "orchestrator_core" and inside and inside[0] not in CONTRACT:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert found == []


def plugin_files() -> Iterator[tuple[Path, bool]]:
    """Every Python file of the bundled plugins, and whether it is one of their tests."""
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        yield path, "tests" in path.relative_to(ROOT / "plugins").parts


def test_bundled_plugins_use_only_the_public_names() -> None:
    public = set(orchestrator_core.__all__)
    found = []
    for path, is_test in plugin_files():
        where = path.relative_to(ROOT)
        for line, target, names in imported(path, path.stem):
            if root_of(target) in set(PACKAGES) - {"orchestrator_core"}:
                found.append(f"{where}:{line} imports {target}")
            elif target == "orchestrator_core":
                found.extend(f"{where}:{line} imports {n}" for n in names if n not in public)
            elif root_of(target) == "orchestrator_core" and not (
                is_test and target == "orchestrator_core.testing"
            ):
                found.append(f"{where}:{line} imports {target}")
    assert found == []


def test_the_layout_check_sees_the_plugins_and_their_tests() -> None:
    files = list(plugin_files())
    assert len(files) > 20
    assert {is_test for _, is_test in files} == {True, False}


def test_the_client_imports_none_of_the_server_stack() -> None:
    probe = (
        "import sys, orchestrator_client; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(done.stdout.split())
    assert "httpx" in loaded
    assert loaded & (SERVER_STACK | {"api", "worker", "cli"}) == set()


STATE_NAMES = "|".join(state.value for state in State)


def test_the_store_script_writes_no_state_name_of_its_own() -> None:
    template = script.template()
    # Every state name in the script is a field of S, the table states.py fills in.
    bare = re.findall(rf"(?<![\w.'\"])(?:{STATE_NAMES})\b", template)
    quoted = re.findall(rf"""['"]({STATE_NAMES})['"]""", template)
    assert (bare, quoted) == ([], [])
    used = set(re.findall(r"\bS\.(\w+)", template))
    assert used <= {state.value for state in State}
    assert {"CREATED", "RUNNING", "RETRYING", "FAILED", "CANCELLED"} <= used


def test_the_script_tables_are_the_state_table() -> None:
    tables = script.tables()
    for state in State:
        assert f"{state.value} = '{state.value}'" in tables["STATES"]
    source = script.source()
    assert "--[[" not in source  # every placeholder filled in
    assert tables["STARTABLE"] == "{CREATED = true, RETRYING = true}"
    assert tables["TERMINAL"] == "{CANCELLED = true, COMPLETED = true, FAILED = true}"


@pytest.mark.parametrize("path", sorted((ROOT / "api" / "ui").glob("*.js")), ids=lambda p: p.name)
def test_the_dashboard_writes_no_state_name(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert re.findall(rf"""['"`]({STATE_NAMES})['"`]""", text) == []
