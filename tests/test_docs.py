"""The plugin author's guide stays true to the code: hooks, fields, settings and examples."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator_core import CancellationToken, JobType, Settings, State, hookspecs

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
TEXT = GUIDE.read_text(encoding="utf-8")

MARKER = re.compile(r"<!--\s*from:\s*(?P<path>\S+)\s*-->")
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclasses.dataclass(frozen=True)
class Block:
    lang: str
    body: str
    source: str | None
    """The file named by the ``<!-- from: ... -->`` comment right before the block."""
    line: int


def blocks() -> list[Block]:
    found = []
    for match in FENCE.finditer(TEXT):
        before = TEXT[: match.start()].rstrip().splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        indent = match["indent"]
        body = "\n".join(line.removeprefix(indent) for line in match["body"].splitlines())
        found.append(
            Block(
                lang=match["lang"],
                body=body,
                source=marker["path"] if marker else None,
                line=TEXT.count("\n", 0, match.start()) + 1,
            )
        )
    return found


def hooks() -> dict[str, list[str]]:
    marker = f"{hookspecs.hookspec.project_name}_spec"
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, marker)
    }


def block_id(block: Block) -> str:
    return f"line {block.line}"


def test_the_hookspecs_are_found() -> None:
    found = hooks()
    assert found["register_job_types"] == []
    assert found["job_transitioned"] == ["job", "old_state", "new_state"]


@pytest.mark.parametrize(("name", "parameters"), sorted(hooks().items()))
def test_every_hook_is_documented_with_its_parameters(name: str, parameters: list[str]) -> None:
    signature = f"`{name}({', '.join(parameters)})`"
    assert signature in TEXT, f"docs/plugins.md must show the hook as {signature}"
    for parameter in parameters:
        assert f"`{parameter}`" in TEXT, f"docs/plugins.md must describe `{parameter}` of {name}"


def test_the_guide_quotes_tested_files() -> None:
    sources = {block.source for block in blocks() if block.source}
    assert {
        "plugins/demo/orchestrator_demo/plugin.py",
        "plugins/demo/pyproject.toml",
        "cli/templates/package/plugin.py.tmpl",
        "cli/templates/tests/test_plugin.py.tmpl",
    } <= sources


@pytest.mark.parametrize("block", [b for b in blocks() if b.source], ids=block_id)
def test_a_quoted_block_occurs_verbatim_in_its_file(block: Block) -> None:
    assert block.source is not None
    path = ROOT / block.source
    assert path.is_file(), f"{block.source} (quoted at docs line {block.line}) does not exist"
    assert block.body.strip() in path.read_text(encoding="utf-8"), (
        f"the block at docs/plugins.md line {block.line} is not in {block.source} as quoted; "
        "copy it again from the file"
    )


@pytest.mark.parametrize("block", [b for b in blocks() if b.lang == "python"], ids=block_id)
def test_every_python_block_is_quoted_from_a_file_and_compiles(block: Block) -> None:
    assert block.source is not None, (
        f"the python block at docs/plugins.md line {block.line} needs a "
        "<!-- from: path --> comment naming the tested file it is copied from"
    )
    compile(block.body, f"docs/plugins.md:{block.line}", "exec")


def test_the_guide_names_every_job_type_field() -> None:
    fields = [f.name for f in dataclasses.fields(JobType) if f.init]
    assert {"name", "payload", "execute", "max_attempts_limit", "retention", "concurrency"} <= set(
        fields
    )
    missing = [name for name in fields if f"| `{name}` |" not in TEXT]
    assert not missing, f"the JobType table in docs/plugins.md lacks {missing}"


def test_the_guide_names_the_token_members_and_every_state() -> None:
    members: list[Any] = [
        name
        for name in vars(CancellationToken)
        if not name.startswith("_") and name not in {"cancel", "progress"}
    ] + ["job_id", "attempt"]
    missing = [name for name in members if f"token.{name}" not in TEXT]
    assert not missing, f"docs/plugins.md does not explain token members {missing}"
    assert [s.value for s in State if f"`{s.value}`" not in TEXT] == []


def test_every_setting_the_guide_names_exists() -> None:
    named = set(re.findall(r"ORCHESTRATOR_([A-Z_]+)", TEXT))
    assert {"PLUGINS", "CANCEL_GRACE_SECONDS"} <= named
    unknown = {name for name in named if name.lower() not in Settings.model_fields}
    assert not unknown, f"docs/plugins.md names settings that do not exist: {sorted(unknown)}"


def test_the_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        name for name in Settings.model_fields if f"`ORCHESTRATOR_{name.upper()}`" not in readme
    ]
    assert not missing, f"README's settings table lacks: {missing}"


ARCHITECTURE = ROOT / "docs" / "architecture.md"
CORE = ROOT / "orchestrator_core"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_links_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/architecture.md)" in readme


def test_every_file_the_architecture_names_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(re.findall(r"[\w/]+\.(?:py|lua|js)\b", text)) - {"lua/*.lua"}
    assert len(named) > 30
    missing = [
        name
        for name in sorted(named)
        if not any(
            (base / name).is_file()
            for base in (
                ROOT,
                CORE,
                *(CORE / folder for folder in ("store", "dispatch", "telemetry")),
            )
        )
    ]
    assert missing == [], f"docs/architecture.md names files that do not exist: {missing}"


@pytest.mark.parametrize(
    "document",
    sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "plugins").glob("*/*.md")]),
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_relative_links_stay_inside_the_repository(document: Path) -> None:
    for target in LINK.findall(document.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"
