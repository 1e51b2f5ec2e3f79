"""``orchestrator queues upgrade``: priorities for the queues an earlier release declared."""

from __future__ import annotations

import argparse
import sys

from cli.arguments import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Commands, names, positive
from orchestrator_core.dispatch.broker import queue_name
from orchestrator_core.dispatch.upgrade import BATCH, QueueUpgrade, upgrade_queues
from orchestrator_core.exceptions import (
    BrokerUnavailableError,
    StoreUnavailableError,
    UnknownJobTypeError,
)
from orchestrator_core.plugins import load_plugins
from orchestrator_core.settings import load_settings
from orchestrator_core.store.keys import Keys


def add_commands(commands: Commands) -> None:
    command = commands.add_parser(
        "queues",
        help="maintain the broker's job queues",
        description="Maintain the job queues on the broker.",
    )
    actions = command.add_subparsers(dest="queues_action", required=True, metavar="ACTION")
    _add_upgrade(actions)


def _add_upgrade(actions: Commands) -> None:
    upgrade = actions.add_parser(
        "upgrade",
        help="give queues declared without priorities their priorities, keeping every job",
        description="Declare again, with priorities, the queues of the installed job types "
        "(or of those given) that an earlier release declared without: their messages wait "
        "in a holding queue meanwhile and come back with their jobs' priorities. Stop the "
        "workers first. Safe to run again after any failure: it finishes what it began. "
        "Exits 1 if a queue could not be upgraded.",
    )
    upgrade.add_argument(
        "--types",
        type=names,
        default=None,
        metavar="A,B",
        help="comma-separated job types whose queues to upgrade (default: all installed)",
    )
    upgrade.add_argument(
        "--batch",
        type=positive,
        default=BATCH,
        metavar="N",
        help=f"messages moved per broker confirm (default {BATCH})",
    )
    upgrade.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    settings = load_settings()
    plugins = load_plugins(allow=settings.plugins)
    keys = Keys(settings.prefix)
    try:
        types = [plugins.get(name).job_type for name in args.types or plugins.job_types]
    except UnknownJobTypeError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    queues = sorted({queue_name(keys, job_type) for job_type in types})
    try:
        done = upgrade_queues(settings, queues, batch=args.batch)
    except (BrokerUnavailableError, StoreUnavailableError) as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for result in done:
        print(_line(result), flush=True)
    return EXIT_OK


def _line(result: QueueUpgrade) -> str:
    if result.upgraded:
        return f"{result.queue}: upgraded, with priorities now; {result.moved} message(s) kept"
    if not result.exists:
        return f"{result.queue}: not declared yet (it will be, with priorities)"
    return f"{result.queue}: has priorities already"
