"""``orchestrator types``: the job types the API serves, with the flow control in effect
(DESIGN section 9), and ``orchestrator types set`` to override it for the deployment."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cli import output
from cli.arguments import EXIT_OK, EXIT_USAGE, Commands, add_json_flag, positive
from cli.jobs import _with_client, priority
from orchestrator_core.flow import LIMIT_FIELDS, Rate

if TYPE_CHECKING:
    from orchestrator_client import Client

COLUMNS = (
    ("NAME", "name"),
    ("PRIORITY", "priority"),
    ("CONCURRENCY", "concurrency"),
    ("PER-KEY", "concurrency_per_key"),
    ("RATE", "rate_limit"),
    ("RATE/KEY", "rate_limit_per_key"),
    ("PAUSED", "paused"),
)
OVERRIDDEN = "*"


def add_commands(commands: Commands) -> None:
    command = commands.add_parser(
        "types",
        help="list the job types with their limits, or change the limits",
        description="List the API's job types with the flow control in effect: priority, "
        f"concurrency and rate limits (per key too) and whether paused; a value marked "
        f"{OVERRIDDEN} is an operator's override. 'types set' changes them.",
    )
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_list))
    _add_set(command.add_subparsers(dest="action", metavar="ACTION"))


def _add_set(actions: Commands) -> None:
    command = actions.add_parser(
        "set",
        help="override a job type's limits for the whole deployment",
        description="Override a job type's flow control in every worker, from the next start "
        "of one of its jobs on. Running jobs are left to finish: --pause starts no new job "
        "of the type until --resume. --clear puts a field back to the type's own value.",
    )
    command.add_argument("name", metavar="NAME", help="the job type, e.g. demo.echo")
    command.add_argument("--concurrency", type=positive, metavar="N", help="at most N running")
    command.add_argument(
        "--concurrency-per-key", type=positive, metavar="N", help="at most N running per key"
    )
    command.add_argument(
        "--rate-limit", type=rate, metavar="R", help="at most R starts: 20/s, 100/m or 5/h"
    )
    command.add_argument(
        "--rate-limit-per-key", type=rate, metavar="R", help="at most R starts per key"
    )
    command.add_argument(
        "--priority", type=priority, metavar="P", help="for jobs submitted without their own"
    )
    pause = command.add_mutually_exclusive_group()
    pause.add_argument(
        "--pause", dest="paused", action="store_const", const=True, help="start no new job"
    )
    pause.add_argument(
        "--resume", dest="paused", action="store_const", const=False, help="start jobs again"
    )
    command.add_argument(
        "--clear",
        type=field_name,
        action="extend",
        nargs="+",
        default=[],
        metavar="FIELD",
        help=f"remove the override of FIELD: {', '.join(LIMIT_FIELDS)}",
    )
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_set))


def _list(client: Client, args: argparse.Namespace) -> int:
    types = client.job_types()
    if args.json:
        print(output.as_json(types))
    else:
        print("\n".join(table(types)))
    return EXIT_OK


def _set(client: Client, args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("concurrency", "concurrency_per_key", "rate_limit", "rate_limit_per_key")
        if getattr(args, name) is not None
    }
    if args.priority is not None:
        changes["priority"] = args.priority
    if args.paused is not None:
        changes["paused"] = True if args.paused else None  # resumed: no override left
    both = sorted(set(changes) & set(args.clear))
    if both:
        return _usage(f"both set and cleared: {', '.join(both)}")
    changes.update(dict.fromkeys(args.clear))
    if not changes:
        return _usage("nothing to change: give a limit, --pause, --resume or --clear FIELD")
    entry = client.update_job_type(args.name, **changes)
    print(output.as_json(entry) if args.json else "\n".join(table([entry])))
    return EXIT_OK


def table(types: list[dict[str, Any]]) -> list[str]:
    """The job types, a row each, their overridden values marked."""
    if not types:
        return ["no job types"]
    rows = [tuple(title for title, _ in COLUMNS)]
    rows += [tuple(_cell(entry, name) for _, name in COLUMNS) for entry in types]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if any(entry.get("overrides") for entry in types):
        lines.append(f"{OVERRIDDEN} overridden; 'orchestrator types set NAME --clear FIELD' undoes")
    return lines


def _cell(entry: dict[str, Any], name: str) -> str:
    value = entry.get(name)
    if name == "paused":
        value = "yes" if value else "no"
    text = "-" if value is None else str(value)
    return text + (OVERRIDDEN if name in (entry.get("overrides") or {}) else "")


def _usage(message: str) -> int:
    print(f"orchestrator: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def rate(text: str) -> str:
    try:
        return str(Rate.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def field_name(text: str) -> str:
    name = text.replace("-", "_")
    if name not in LIMIT_FIELDS:
        raise argparse.ArgumentTypeError(f"not a limit: {text!r}; one of {', '.join(LIMIT_FIELDS)}")
    return name
