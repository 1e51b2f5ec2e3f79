"""``orchestrator schedules``: add, list, show, pause, resume and delete cron schedules,
each a call of the API at ``ORCHESTRATOR_API_URL``. With no subcommand, it lists them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cli import output
from cli.arguments import EXIT_OK, Commands, add_json_flag, json_object
from cli.jobs import _with_client as with_client

if TYPE_CHECKING:
    from orchestrator_client import Client
    from orchestrator_client.schedules import Schedules

Document = dict[str, Any]

COLUMNS = ("NAME", "CRON", "TIMEZONE", "TYPE", "ENABLED", "NEXT RUN", "LAST RUN", "LAST JOB")


def add_commands(commands: Commands) -> None:
    command = commands.add_parser(
        "schedules",
        help="cron schedules: each fire makes one job",
        description="Manage the cron schedules that the workers fire; each fire creates "
        "one job of the schedule's type and payload. Without a subcommand: list them.",
    )
    add_json_flag(command)
    command.set_defaults(handler=with_client(_list))
    actions = command.add_subparsers(dest="action", metavar="ACTION")
    _add_add(actions)
    _add_simple(actions, "list", "list the schedules, by name", _list, named=False)
    _add_simple(actions, "get", "show a schedule", _get)
    _add_simple(actions, "pause", "stop firing a schedule", _pause)
    _add_simple(actions, "resume", "fire a paused schedule again, from its next fire on", _resume)
    _add_simple(actions, "delete", "delete a schedule (the jobs it made stay)", _delete)


def _add_add(actions: Commands) -> None:
    command = actions.add_parser(
        "add",
        help="add a schedule",
        description="Add a schedule: CRON is a standard five-field expression (minute hour "
        "day-of-month month day-of-week), read in --timezone. The payload is validated "
        "against the type's schema, as for a submission.",
    )
    command.add_argument("name", metavar="NAME", help="lowercase letters, digits, . _ -")
    command.add_argument("cron", metavar="CRON", help='e.g. "0 3 * * *" (quote it)')
    command.add_argument("type", metavar="TYPE", help="the job type, e.g. demo.echo")
    command.add_argument(
        "payload", metavar="PAYLOAD_JSON", type=json_object, help="the payload, a JSON object"
    )
    command.add_argument(
        "--timezone", default="UTC", metavar="TZ", help="IANA time zone (default UTC)"
    )
    command.add_argument(
        "--priority", type=int, metavar="N", help="0..9, overrides the type's priority"
    )
    command.add_argument(
        "--concurrency-key", metavar="K", help="the key the per-key limits count its jobs by"
    )
    command.add_argument("--paused", action="store_true", help="add it paused")
    add_json_flag(command)
    command.set_defaults(handler=with_client(_add))


def _add_simple(
    actions: Commands,
    name: str,
    text: str,
    run: Callable[[Client, argparse.Namespace], int],
    *,
    named: bool = True,
) -> None:
    command = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
    if named:
        command.add_argument("name", metavar="NAME", help="the schedule's name")
    add_json_flag(command)
    command.set_defaults(handler=with_client(run))


def _schedules(client: Client) -> Schedules:
    from orchestrator_client.schedules import Schedules  # httpx loads only for these

    return Schedules(client)


def _add(client: Client, args: argparse.Namespace) -> int:
    schedule = _schedules(client).create(
        args.name,
        args.cron,
        args.type,
        args.payload,
        timezone=args.timezone,
        priority=args.priority,
        concurrency_key=args.concurrency_key,
        enabled=not args.paused,
    )
    _print(schedule, args, summary(schedule))
    return EXIT_OK


def _list(client: Client, args: argparse.Namespace) -> int:
    items = _schedules(client).list()
    print(output.as_json({"items": items}) if args.json else "\n".join(table(items)))
    return EXIT_OK


def _get(client: Client, args: argparse.Namespace) -> int:
    schedule = _schedules(client).get(args.name)
    _print(schedule, args, *details(schedule))
    return EXIT_OK


def _pause(client: Client, args: argparse.Namespace) -> int:
    schedule = _schedules(client).pause(args.name)
    _print(schedule, args, summary(schedule))
    return EXIT_OK


def _resume(client: Client, args: argparse.Namespace) -> int:
    schedule = _schedules(client).resume(args.name)
    _print(schedule, args, summary(schedule))
    return EXIT_OK


def _delete(client: Client, args: argparse.Namespace) -> int:
    _schedules(client).delete(args.name)
    if args.json:
        print(output.as_json({"deleted": args.name}))
    else:
        print(f"schedule {args.name} deleted")
    return EXIT_OK


def summary(schedule: Document) -> str:
    """One line: ``schedule <name>  <cron> (<zone>)  <type>  next <instant>`` (or ``paused``)."""
    line = (
        f"schedule {schedule.get('name')}  {schedule.get('cron')} ({schedule.get('timezone')})  "
        f"{schedule.get('type')}"
    )
    if not schedule.get("enabled"):
        return f"{line}  paused"
    return f"{line}  next {schedule.get('next_run_at') or '-'}"


def details(schedule: Document) -> list[str]:
    """Everything ``schedules get`` shows."""
    lines = [summary(schedule), f"payload: {output.as_json(schedule.get('payload'))}"]
    for label, field in (("priority", "priority"), ("concurrency key", "concurrency_key")):
        if schedule.get(field) is not None:
            lines.append(f"{label}: {schedule[field]}")
    lines.append(f"created {schedule.get('created_at')}")
    if schedule.get("last_run_at"):
        lines.append(f"last run {schedule['last_run_at']}: job {schedule.get('last_job_id')}")
    else:
        lines.append("never fired yet")
    return lines


def table(items: list[Document]) -> list[str]:
    """The schedules as a table."""
    if not items:
        return ["no schedules"]
    rows = [COLUMNS] + [
        (
            str(s.get("name")),
            str(s.get("cron")),
            str(s.get("timezone")),
            str(s.get("type")),
            "yes" if s.get("enabled") else "paused",
            str(s.get("next_run_at") or "-"),
            str(s.get("last_run_at") or "-"),
            str(s.get("last_job_id") or "-"),
        )
        for s in items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _print(schedule: Document, args: argparse.Namespace, *lines: str) -> None:
    print(output.as_json(schedule) if args.json else "\n".join(lines))
