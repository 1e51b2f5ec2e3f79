"""CPU time by process group, read from ``/proc``: what a measured stretch cost each side.

A group is a process and all its descendants (a worker's pool processes, say), or
every process of one program on the machine (``redis-server``, RabbitMQ's
``beam.smp``). Descendants that exit during the stretch are counted through their
parent's ``cutime``/``cstime`` once reaped, so a pool process replaced mid-run still
counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: split after its closing one.
    return text.rpartition(")")[2].split()


def _seconds(fields: list[str], *, reaped: bool) -> float:
    # Fields after the name start at index 3 of stat(5), so utime (14) is at 11 here.
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    own = utime + stime
    return (own + (cutime + cstime if reaped else 0)) / TICKS


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_seconds(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant, with what their reaped children
    used."""
    tree = _children()
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        fields = _stat(pid)
        if fields is not None:
            total += _seconds(fields, reaped=True)
        pending.extend(tree.get(pid, ()))
    return total


def program_seconds(name: str) -> float:
    """CPU seconds of every process whose command name is ``name`` (e.g. ``beam.smp``)."""
    total = 0.0
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if comm == name and (fields := _stat(int(entry.name))) is not None:
            total += _seconds(fields, reaped=False)
    return total


@dataclass(frozen=True)
class Groups:
    """What to measure: process trees by their root pid, and programs by name."""

    trees: Mapping[str, int]
    programs: Mapping[str, str]

    def read(self) -> dict[str, float]:
        figures = {label: tree_seconds(pid) for label, pid in self.trees.items()}
        figures.update({label: program_seconds(name) for label, name in self.programs.items()})
        return figures


SERVICES = {"redis": "redis-server", "rabbitmq": "beam.smp"}
"""The machine's own services, by the label a report gives them."""


def per_job_ms(
    before: Mapping[str, float], after: Mapping[str, float], jobs: int
) -> dict[str, float]:
    """Milliseconds of CPU per job of each group between two readings."""
    return {label: (after[label] - before[label]) * 1000 / jobs for label in after}


def describe(figures: Mapping[str, float], order: Iterable[str]) -> str:
    """``worker 1.23  redis 0.45 ... total 2.10`` (ms per job)."""
    labels = [label for label in order if label in figures]
    parts = [f"{label} {figures[label]:.2f}" for label in labels]
    return "  ".join([*parts, f"total {sum(figures[label] for label in labels):.2f}"])
