"""``orchestrator plugins``: what the installed plugins provide, and ``plugins new``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cli.arguments import EXIT_FAILED, EXIT_OK, Commands
from cli.scaffold import PluginNames, create_plugin
from orchestrator_core.job_type import JobType
from orchestrator_core.plugins import Plugins, load_plugins
from orchestrator_core.settings import load_settings


def add_commands(commands: Commands) -> None:
    _add_plugins(commands)


def _add_plugins(commands: Commands) -> None:
    command = commands.add_parser(
        "plugins",
        help="list plugins, their job types and load errors",
        description="List the installed plugins (honouring ORCHESTRATOR_PLUGINS), their job "
        "types and every load failure. Exits 1 if any plugin failed to load.",
    )
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(handler=_plugins)
    # Optional, so that plain `orchestrator plugins` keeps listing.
    actions = command.add_subparsers(
        dest="plugins_action", metavar="[ACTION]", help="leave out to list the plugins"
    )
    _add_plugins_new(actions)


def _add_plugins_new(actions: Commands) -> None:
    new = actions.add_parser(
        "new",
        help="create a new plugin distribution from a template",
        description="Create orchestrator-NAME/ in DIR: a plugin distribution with a job type "
        "NAME.hello, its entry point and tests that pass once it is installed "
        "(pip install -e DIR/orchestrator-NAME). Exits 1 if that folder exists and is not empty.",
    )
    new.add_argument(
        "name",
        metavar="NAME",
        type=_plugin_name,
        help="the plugin's name: lowercase letters, digits and dashes, e.g. acme or acme-jobs",
    )
    new.add_argument(
        "--directory",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="where to create orchestrator-NAME/ (default: the current directory)",
    )
    new.set_defaults(handler=_plugins_new)


def _plugins_new(args: argparse.Namespace) -> int:
    try:
        target = create_plugin(args.name, args.directory)
    except OSError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    names = PluginNames.parse(args.name)
    print(f"Created {target}: plugin {names.name!r} with the job type {names.type_name!r}.")
    print("Next:")
    print(f"  pip install -e {target}")
    print(f"  python -m pytest {target / 'tests'}")
    print("  orchestrator plugins")
    return EXIT_OK


def _plugin_name(text: str) -> str:
    try:
        return PluginNames.parse(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _plugins(args: argparse.Namespace) -> int:
    settings = load_settings()
    plugins = load_plugins(allow=settings.plugins)
    if args.json:
        print(json.dumps(_plugins_json(plugins), indent=2))
    else:
        _print_plugins(plugins)
    return EXIT_OK if plugins.report.ok else EXIT_FAILED


def _plugins_json(plugins: Plugins) -> dict[str, Any]:
    report = plugins.report
    return {
        "plugins": [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "value": info.value,
                "job_types": [
                    _job_type_json(plugins.get(name).job_type) for name in info.job_types
                ],
            }
            for info in report.loaded
        ],
        "failures": [asdict(failure) for failure in report.failed],
        "skipped": list(report.skipped),
    }


def _job_type_json(job_type: JobType) -> dict[str, Any]:
    return {
        "name": job_type.name,
        "description": job_type.description,
        "queue": job_type.queue,
        "max_attempts": job_type.max_attempts,
        "timeout": job_type.timeout,
    }


def _print_plugins(plugins: Plugins) -> None:
    report = plugins.report
    print("Plugins:" if report.loaded else "Plugins: none loaded")
    for info in report.loaded:
        print(f"  {info.name}  ({info.distribution} {info.version}, {info.value})")
        if not info.job_types:
            print("    (no job types)")
        for name in info.job_types:
            job_type = plugins.get(name).job_type
            timeout = "none" if job_type.timeout is None else f"{job_type.timeout:g}s"
            print(
                f"    {name}  queue={job_type.queue or '(default)'}  "
                f"max_attempts={job_type.max_attempts}  timeout={timeout}"
            )
    if report.failed:
        print("Failures:")
        for f in report.failed:
            print(f"  {f.plugin}  ({f.distribution} {f.version})  [{f.stage}]  {f.error}")
    if report.skipped:
        print("Skipped (not in ORCHESTRATOR_PLUGINS):")
        for name in report.skipped:
            print(f"  {name}")
