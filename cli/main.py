"""The ``orchestrator`` command (DESIGN section 7).

Each command module (``services``, ``plugins``, ``jobs``, ``types``, ``schedules``,
``queues``) adds its subcommands with ``add_commands``: one ``_add_<name>`` function per
subcommand declares its arguments and sets ``handler``, a function taking the parsed
arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from cli import jobs, plugins, queues, schedules, services, types
from cli.arguments import EXIT_FAILED, EXIT_USAGE
from orchestrator_core.exceptions import ConfigurationError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold for messages on stderr (default: WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins.add_commands(commands)
    services.add_commands(commands)
    jobs.add_commands(commands)
    schedules.add_commands(commands)
    types.add_commands(commands)
    queues.add_commands(commands)
    return parser
