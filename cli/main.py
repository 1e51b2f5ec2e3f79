"""The ``orchestrator`` command (DESIGN section 7).

Each command module (``services``, ``plugins``, ``jobs``, ``types``, ``schedules``,
``queues``) adds its subcommands with ``add_commands``: one ``_add_<name>`` function per
subcommand declares its arguments and sets ``handler``, a function taking the parsed
arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cli import jobs, plugins, queues, schedules, services, types
from cli.arguments import EXIT_FAILED, EXIT_USAGE
from orchestrator_core.exceptions import ConfigurationError
from orchestrator_core.settings import load_settings
from orchestrator_core.telemetry.logs import LogFormat, configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    _configure_logging(args)
    try:
        code: int = args.handler(args)
    except BrokenPipeError:
        # The reader (``| head``, say) has gone; stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except ConfigurationError as exc:
        # An operator's mistake, not a bug: say which setting, without a traceback.
        message = " ".join(str(exc).splitlines())
        print(f"orchestrator: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator", description="Plugin-based distributed job orchestrator."
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold for messages on stderr (default: ORCHESTRATOR_LOG_LEVEL, "
        "else WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins.add_commands(commands)
    services.add_commands(commands)
    jobs.add_commands(commands)
    schedules.add_commands(commands)
    types.add_commands(commands)
    queues.add_commands(commands)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """The process's logging, from ``--log-level`` and ``ORCHESTRATOR_LOG_FORMAT`` /
    ``ORCHESTRATOR_LOG_LEVEL``; with a bad setting, text at WARNING, and the command
    reports the setting itself."""
    try:
        settings = load_settings()
    except ConfigurationError:
        log_format: LogFormat = "text"
        args.log_level = args.log_level or "WARNING"
    else:
        log_format = settings.log_format
        args.log_level = args.log_level or settings.log_level or "WARNING"
    configure_logging(log_format, args.log_level)
