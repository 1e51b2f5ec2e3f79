"""``orchestrator plugins new``: the new distribution installs, lints and passes its tests."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from cli.scaffold import PluginNames, create_plugin, render

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*command: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_names_are_derived_from_the_plugin_name() -> None:
    assert PluginNames.parse("acme-jobs") == PluginNames(
        name="acme-jobs",
        distribution="orchestrator-acme-jobs",
        package="orchestrator_acme_jobs",
        type_name="acme-jobs.hello",
    )
    assert PluginNames.parse("a1").package == "orchestrator_a1"


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "acme_jobs", "1acme", "-acme", "acme-", "acme--jobs", "acme.jobs", "a" * 51],
)
def test_an_invalid_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="lowercase letters, digits and single dashes"):
        PluginNames.parse(name)


def test_the_orchestrator_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="leave out 'orchestrator'"):
        PluginNames.parse("orchestrator-acme")


def test_the_command_refuses_an_invalid_name_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["plugins", "new", "Acme", "--directory", str(tmp_path)])
    assert caught.value.code == 2
    assert "argument NAME: invalid plugin name 'Acme'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_a_non_empty_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "orchestrator-acme"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    assert main(["plugins", "new", "acme", "--directory", str(tmp_path)]) == 1

    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    with pytest.raises(FileExistsError):
        create_plugin("acme", tmp_path)


def test_the_command_fills_an_empty_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "orchestrator-acme").mkdir()
    assert main(["plugins", "new", "acme", "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"Created {tmp_path / 'orchestrator-acme'}" in out
    assert "job type 'acme.hello'" in out
    assert (tmp_path / "orchestrator-acme" / "orchestrator_acme" / "plugin.py").is_file()


def test_plugins_listing_is_unchanged_by_the_new_action(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_PLUGINS", "demo")
    assert main(["plugins", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in report["plugins"]] == ["demo"]
    assert main(["plugins"]) == 0
    assert "demo.echo" in capsys.readouterr().out


def test_the_rendered_files_name_the_plugin() -> None:
    files = {str(path): text for path, text in render(PluginNames.parse("acme-jobs")).items()}
    assert sorted(files) == [
        ".gitignore",
        "README.md",
        "orchestrator_acme_jobs/__init__.py",
        "orchestrator_acme_jobs/plugin.py",
        "orchestrator_acme_jobs/py.typed",
        "pyproject.toml",
        "tests/test_plugin.py",
    ]
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "orchestrator-acme-jobs"
    assert "orchestrator" in project["project"]["dependencies"]
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert project["project"]["entry-points"]["orchestrator.plugins"] == {
        "acme-jobs": "orchestrator_acme_jobs.plugin"
    }
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "orchestrator_acme_jobs"
    ]
    assert 'name="acme-jobs.hello"' in files["orchestrator_acme_jobs/plugin.py"]
    assert "$" not in "".join(files.values())


def test_the_wheel_ships_the_templates_and_the_pytest_plugin(tmp_path: Path) -> None:
    # Built the way pip builds it for an install: an isolated build with the declared backend.
    done = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path, ROOT, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = tmp_path.glob("orchestrator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    templates = ROOT / "cli" / "templates"
    expected = {
        path.relative_to(ROOT).as_posix() for path in templates.rglob("*.tmpl") if path.is_file()
    }
    assert len(expected) == 7
    assert expected <= names
    assert "[pytest11]\norchestrator = orchestrator_core.testing" in declared


@pytest.mark.parametrize("name", ["a", "a" * 50, "x1-" * 16 + "yz"])
def test_the_templates_give_ruff_clean_code_for_any_name_length(tmp_path: Path, name: str) -> None:
    project = create_plugin(name, tmp_path)
    for command in (["ruff", "check"], ["ruff", "format", "--check"]):
        done = run(BIN / command[0], *command[1:], "--no-cache", ".", cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def scaffolded(tmp_path: Path) -> Iterator[tuple[PluginNames, Path]]:
    """A freshly scaffolded plugin, installed editable; uninstalled afterwards."""
    names = PluginNames.parse(f"scaffoldt{uuid.uuid4().hex[:6]}")
    assert main(["plugins", "new", names.name, "--directory", str(tmp_path)]) == 0
    project = tmp_path / names.distribution
    try:
        done = run(sys.executable, "-m", "pip", "install", "-q", "-e", project, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        yield names, project
    finally:
        run(sys.executable, "-m", "pip", "uninstall", "-y", "-q", names.distribution, cwd=tmp_path)


def test_the_scaffolded_plugin_passes_its_own_tests_and_linters(
    scaffolded: tuple[PluginNames, Path],
) -> None:
    names, project = scaffolded

    tests = run(sys.executable, "-m", "pytest", project / "tests", "-q", cwd=project.parent)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # completion, cancellation, timeout, the entry point and four invalid payloads
    assert "8 passed" in tests.stdout, tests.stdout

    for command in (["ruff", "check"], ["ruff", "format", "--check"]):
        done = run(BIN / command[0], *command[1:], "--no-cache", ".", cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
    cache = project.parent / "mypy-cache"
    done = run(BIN / "mypy", "--cache-dir", cache, names.package, "tests", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
