"""The folder outside the checkout where the stack's slow-to-make inputs are kept."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(os.environ.get("ORCHESTRATOR_STACK_CACHE", "/var/cache/orchestrator-stack"))
"""Root file system tarballs and wheelhouses, each named by a hash of what shapes it."""


@contextlib.contextmanager
def locked() -> Iterator[Path]:
    """The cache folder, held exclusively: two runs never make the same entry at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield CACHE
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
