"""Wheels made on the host for the Dockerfile's no-index build (its `wheels/` directory).

The host's pip resolves for the host's Python; the image's may be another patch
release of the same minor version (Debian bookworm has 3.11.2), and a dependency can
hinge on that: ``async-timeout; python_full_version < "3.11.3"`` from redis. So after
the first ``pip wheel`` every requirement whose marker holds for the image's Python but
not for the host's is wheeled too, until nothing is missing.

The set is cached outside the checkout, keyed by the projects' pyproject.toml files,
plugins.txt and the image's Python, without the project's own wheels: the image's
builder always builds those from the sources it is given.
"""

from __future__ import annotations

import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version
from stack_cache import locked

MARKER_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
ROUNDS = 5
RECIPE = 1
"""Bump when the steps below change what a cached wheelhouse holds."""


def targets(root: Path) -> list[str]:
    """What the Dockerfile's builder wheels: the project and the bundled plugins."""
    plugins = sorted(path.parent for path in (root / "plugins").glob("*/pyproject.toml"))
    return [".", *(str(path.relative_to(root)) for path in plugins)]


def build_requirements(root: Path, projects: list[str]) -> list[str]:
    """The build backends of ``projects`` (hatchling), which a no-index build also needs."""
    found: set[str] = set()
    for project in projects:
        pyproject = tomllib.loads((root / project / "pyproject.toml").read_text())
        found.update(pyproject.get("build-system", {}).get("requires", []))
    return sorted(found)


def pip_wheel(directory: Path, arguments: list[str], *, cwd: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(directory)]
    done = subprocess.run(
        [*command, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pip wheel {' '.join(arguments)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )


def fill(root: Path, directory: Path, *, python_full_version: str) -> tuple[int, bool]:
    """Copy the cached wheelhouse into ``directory``, making it first if needed.

    :returns: how many wheels were copied, and True if the wheelhouse was made now.
    """
    projects = targets(root)
    key = hashlib.sha256(f"{RECIPE} {python_full_version}".encode())
    for source in [*(f"{project}/pyproject.toml" for project in projects), "plugins.txt"]:
        path = root / source
        key.update(f"\0{source}\0".encode() + (path.read_bytes() if path.is_file() else b""))
    with locked() as cache:
        cached = cache / f"wheels-py{python_full_version}-{key.hexdigest()[:16]}"
        made = not cached.is_dir()
        if made:
            partial = cache / f"{cached.name}.{os.getpid()}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            try:
                make_wheelhouse(root, partial, python_full_version=python_full_version)
                own = {_project_name(root / project) for project in projects}
                for wheel in partial.glob("*.whl"):
                    if parse_wheel_filename(wheel.name)[0] in own:
                        wheel.unlink()
                partial.rename(cached)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    wheels = sorted(cached.glob("*.whl"))
    for wheel in wheels:
        shutil.copy2(wheel, directory / wheel.name)
    return len(wheels), made


def _project_name(project: Path) -> str:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    return canonicalize_name(pyproject["project"]["name"])


def make_wheelhouse(root: Path, directory: Path, *, python_full_version: str) -> int:
    """Fill ``directory`` with wheels for the image's build; returns how many there are.

    :param python_full_version: the image's Python, e.g. ``3.11.2``.
    """
    projects = targets(root)
    arguments = [*projects, *build_requirements(root, projects)]
    if (root / "plugins.txt").is_file():
        arguments += ["-r", "plugins.txt"]
    pip_wheel(directory, arguments, cwd=root)
    for _ in range(ROUNDS):
        missing = missing_for(directory, python_full_version)
        if not missing:
            return len(list(directory.glob("*.whl")))
        pip_wheel(directory, missing, cwd=root)
    raise RuntimeError(f"wheels still missing for Python {python_full_version}: {missing}")


def missing_for(directory: Path, python_full_version: str) -> list[str]:
    """Requirements of the wheels that only Python ``python_full_version`` needs, and lacks."""
    present: dict[str, list[Version]] = {}
    wheels = sorted(directory.glob("*.whl"))
    for wheel in wheels:
        name, version, _, _ = parse_wheel_filename(wheel.name)
        present.setdefault(name, []).append(version)
    host = {str(key): str(value) for key, value in default_environment().items()}
    image = dict(
        host,
        python_full_version=python_full_version,
        python_version=".".join(python_full_version.split(".")[:2]),
    )
    missing: set[str] = set()
    for wheel in wheels:
        for requirement in requires(wheel):
            marker = requirement.marker
            if marker is None:
                continue
            extras = {"", *MARKER_EXTRA.findall(str(marker))}
            if not any(
                marker.evaluate({**image, "extra": extra})
                and not marker.evaluate({**host, "extra": extra})
                for extra in extras
            ):
                continue
            versions = present.get(canonicalize_name(requirement.name), [])
            if any(requirement.specifier.contains(v, prereleases=True) for v in versions):
                continue
            wanted = requirement.name
            if requirement.extras:
                wanted += f"[{','.join(sorted(requirement.extras))}]"
            missing.add(wanted + str(requirement.specifier))
    return sorted(missing)


def requires(wheel: Path) -> list[Requirement]:
    """The ``Requires-Dist`` entries of a wheel's metadata."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(
            entry
            for entry in archive.namelist()
            if entry.count("/") == 1 and entry.endswith(".dist-info/METADATA")
        )
        metadata = email.parser.BytesParser().parsebytes(archive.read(name), headersonly=True)
    return [Requirement(value) for value in metadata.get_all("Requires-Dist") or []]
