"""What the command line accepts and answers: argument types, shared flags, exit codes."""

from __future__ import annotations

import argparse
import json
from typing import Any, TypeAlias

from cli import output
from orchestrator_core.states import State

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""Where each command module adds its subcommands."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
"""Also what argparse uses for bad arguments; a bad setting is the same kind of mistake."""
EXIT_INTERRUPTED = 130
"""What a shell reports for a command stopped by Ctrl-C."""


def add_filters(command: argparse.ArgumentParser, *, state_help: str, type_help: str) -> None:
    """``--state`` (any case) and ``--type``, with their help texts."""
    command.add_argument(
        "--state",
        type=str.upper,
        choices=[state.value for state in State],
        help=f"{state_help} (any case)",
    )
    command.add_argument("--type", metavar="T", help=type_help)


def add_json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="print the API's JSON on stdout, nothing else"
    )


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = output.json_kind(value)
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, not {kind}")
    return value


def job_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a job id cannot be empty")
    return text.strip()


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one job type")
    return names
