"""A Debian base image made without a registry: debootstrap, cached as a tarball, imported.

One root file system serves as PYTHON_IMAGE and as the base of the redis and rabbitmq
stand-ins (``images/``): Debian's python3, pip and venv, redis-server and
rabbitmq-server. debootstrap fetches from the Debian mirror the host's apt uses; the
tarball is cached outside the checkout, keyed by everything that shapes it, so only
the first run on a machine pays for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import docker
from stack_cache import CACHE, locked

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    "ca-certificates",
    "python3",
    "python3-pip",
    "python3-venv",
    "rabbitmq-server",
    "redis-server",
)
RECIPE = 1
"""Bump when the steps below change what the tarball holds, so caches are rebuilt."""

SLIMMED = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
)
"""Folders emptied before the tarball is made: downloaded packages, indexes, docs."""

IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

APT = Path("/etc/apt")


def cache_key() -> str:
    recipe = {
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(PACKAGES),
        "machine": platform.machine(),
        "recipe": RECIPE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def tarball_path() -> Path:
    return CACHE / f"debian-{SUITE}-{cache_key()}.tar"


def debian_mirror(apt: Path = APT) -> str | None:
    """The first archive URI in apt's sources that serves ``SUITE`` with ``main``.

    None when apt names none (debootstrap then uses its own default mirror). Both the
    one-line ``.list`` format and the deb822 ``.sources`` format are read.
    """
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                return words[1]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = _deb822(stanza)
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if (
                "deb" in fields.get("types", "").split()
                and SUITE in fields.get("suites", "").split()
                and "main" in fields.get("components", "").split()
                and fields.get("uris")
            ):
                return fields["uris"].split()[0]
    return None


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    name = ""
    for line in stanza.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:
            fields[name] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        name = key.strip().lower()
        fields[name] = value.strip()
    return fields


def rootfs_tarball() -> tuple[Path, bool]:
    """The cached root file system tarball, made now if missing; True if it was made now.

    :raises RuntimeError: debootstrap failed; the message has the end of its log.
    """
    target = tarball_path()
    with locked() as cache:
        if target.is_file():
            return target, False
        build = cache / f"build-{cache_key()}-{os.getpid()}"
        rootfs = build / "rootfs"
        try:
            build.mkdir()
            _debootstrap(rootfs, build / "debootstrap.log")
            for folder in SLIMMED:
                _empty(rootfs / folder)
            partial = build / "rootfs.tar"
            subprocess.run(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
                check=True,
                capture_output=True,
                timeout=300,
            )
            partial.rename(target)
        finally:
            _remove_tree(build)
    return target, True


def _debootstrap(rootfs: Path, log: Path) -> None:
    command = [
        "debootstrap",
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
    ]
    mirror = debian_mirror()
    if mirror:
        command.append(mirror)
    with log.open("wb") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{tail}")


def _empty(folder: Path) -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _remove_tree(path: Path) -> None:
    """Remove a build folder, first undoing any mount a failed debootstrap left in it."""
    if not path.exists():
        return
    prefix = os.path.realpath(path) + os.sep
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    shutil.rmtree(path)


def import_image(client: docker.DockerClient, tarball: Path, name: str) -> None:
    """``docker import`` the tarball as ``name`` (repository:tag), with a usable PATH."""
    repository, tag = name.rsplit(":", 1)
    client.api.import_image_from_file(
        str(tarball), repository=repository, tag=tag, changes=list(IMAGE_CHANGES)
    )


def python_version(client: docker.DockerClient, image: str) -> str:
    """The full version of the image's python3, e.g. ``3.11.2``."""
    output = client.containers.run(
        image,
        ["python3", "-c", "import platform; print(platform.python_version())"],
        network_mode="none",
        remove=True,
    )
    return bytes(output).decode().strip()
