"""Checking an installed distribution's plugins as the orchestrator would load them."""

from __future__ import annotations

import json
import re
import warnings
from importlib.metadata import PackageNotFoundError, distribution

from orchestrator_core.job_type import JobType
from orchestrator_core.plugins import GROUP, load_plugins


def check_distribution(distribution_name: str) -> list[JobType]:
    """Load an installed distribution's plugins as the orchestrator would, and check them.

    Loads the entry points the distribution declares in the ``orchestrator.plugins``
    group (and no other plugin), then checks that none failed, that every job type's
    payload JSON Schema generates without a warning and that every type has a
    description (the ``execute`` docstring, or ``description=``).

    :param distribution_name: the name in the distribution's ``pyproject.toml``, e.g.
        ``"orchestrator-acme"``; it must be installed (``pip install -e .``).
    :return: the distribution's job types, sorted by name.
    :raises AssertionError: listing every problem found.
    """
    __tracebackhide__ = True
    try:
        dist = distribution(distribution_name)
    except PackageNotFoundError:
        raise AssertionError(
            f"distribution {distribution_name!r} is not installed; install it first "
            "(pip install -e .)"
        ) from None
    names = sorted({ep.name for ep in dist.entry_points if ep.group == GROUP})
    if not names:
        raise AssertionError(
            f"distribution {distribution_name!r} declares no entry point in the {GROUP!r} "
            f'group; add one to pyproject.toml:\n  [project.entry-points."{GROUP}"]\n'
            '  acme = "acme_jobs.plugin"'
        )
    plugins = load_plugins(allow=names)
    problems = [
        f"plugin {f.plugin!r} ({f.distribution} {f.version}) failed at stage {f.stage}: {f.error}"
        for f in plugins.report.failed
    ]
    ours = _canonical(distribution_name)
    job_types = [
        registered.job_type
        for registered in plugins.job_types.values()
        if _canonical(registered.plugin.distribution or "") == ours
    ]
    for job_type in job_types:
        problems.extend(_job_type_problems(job_type))
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise AssertionError(f"distribution {distribution_name!r} has problems:\n{listed}")
    return sorted(job_types, key=lambda t: t.name)


def _job_type_problems(job_type: JobType) -> list[str]:
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            schema = job_type.payload.model_json_schema()
            json.dumps(schema, allow_nan=False)
        except Exception as exc:
            problems.append(
                f"{job_type.name}: the payload's JSON Schema does not generate: "
                f"{type(exc).__name__}: {exc}"
            )
    problems.extend(
        f"{job_type.name}: generating the payload's JSON Schema warns: {w.message}" for w in caught
    )
    if not (job_type.description or "").strip():
        problems.append(
            f"{job_type.name}: no description; give execute a docstring or pass description="
        )
    return problems


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
