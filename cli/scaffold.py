"""``orchestrator plugins new``: a new plugin distribution, ready to install and to test.

The files come from the templates in ``cli/templates/``: each
``*.tmpl`` file is rendered with :class:`string.Template` (``${name}`` and friends,
see :class:`PluginNames`), the ``package`` folder takes the Python package's name,
and ``gitignore`` becomes ``.gitignore``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from string import Template

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
"""A plugin name: lowercase words of letters and digits joined by single dashes."""

MAX_NAME_LENGTH = 50
"""Longer names would make the generated code's lines run past the linter's limit."""

TEMPLATES = "templates"
"""The folder of templates inside the ``cli`` package."""

_SUFFIX = ".tmpl"


@dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin needs, derived from the one its author chose.

    For ``acme-jobs``: the entry point ``acme-jobs``, the distribution
    ``orchestrator-acme-jobs``, the package ``orchestrator_acme_jobs`` and the job
    type ``acme-jobs.hello``. Each field is a template variable.
    """

    name: str
    """The entry-point name, which ``ORCHESTRATOR_PLUGINS`` lists."""
    distribution: str
    """The name ``pip`` installs and uninstalls, and the project's folder."""
    package: str
    """The importable package (dashes become underscores)."""
    type_name: str
    """The job type the template registers."""

    @classmethod
    def parse(cls, name: str) -> PluginNames:
        """Check ``name`` and derive the other names from it.

        :raises ValueError: saying what a valid name looks like.
        """
        if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"invalid plugin name {name!r}: use lowercase letters, digits and single "
                f"dashes, starting with a letter, at most {MAX_NAME_LENGTH} characters "
                "(e.g. 'acme' or 'acme-jobs')"
            )
        if name == "orchestrator" or name.startswith("orchestrator-"):
            raise ValueError(
                f"invalid plugin name {name!r}: leave out 'orchestrator', which the "
                "distribution's name gets anyway (e.g. 'acme' makes 'orchestrator-acme')"
            )
        package = f"orchestrator_{name.replace('-', '_')}"
        return cls(name, f"orchestrator-{name}", package, f"{name}.hello")


def render(names: PluginNames) -> dict[PurePosixPath, str]:
    """The files of the new distribution: path relative to its folder -> text."""
    variables = asdict(names)
    files: dict[PurePosixPath, str] = {}
    for relative, template in _templates(resources.files("cli") / TEMPLATES):
        parts = [_output_name(part, names) for part in relative.parts]
        text = Template(template.read_text(encoding="utf-8")).substitute(variables)
        files[PurePosixPath(*parts)] = text
    return files


def create_plugin(name: str, directory: Path | str = ".") -> Path:
    """Write a new plugin distribution ``orchestrator-<name>/`` into ``directory``.

    :param name: the plugin's name, e.g. ``acme`` or ``acme-jobs``.
    :param directory: where the project folder goes; created if missing.
    :return: the project folder.
    :raises ValueError: for an invalid name.
    :raises FileExistsError: if the project folder exists and is not empty.
    """
    names = PluginNames.parse(name)
    target = Path(directory) / names.distribution
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(
            f"{target} already exists and is not empty; choose another --directory or name"
        )
    files = render(names)
    for relative, text in sorted(files.items()):
        path = target.joinpath(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


def _output_name(part: str, names: PluginNames) -> str:
    if part == "package":
        return names.package
    # Not stored as .gitignore: the packaging tools would take it for their own.
    return ".gitignore" if part == "gitignore" else part


def _templates(root: Traversable) -> list[tuple[PurePosixPath, Traversable]]:
    """Every template below ``root``, with its path relative to ``root`` minus the suffix."""
    found: list[tuple[PurePosixPath, Traversable]] = []
    pending = [(PurePosixPath(), root)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((prefix / entry.name, entry))
            elif entry.name.endswith(_SUFFIX):
                found.append((prefix / entry.name.removesuffix(_SUFFIX), entry))
    return found
