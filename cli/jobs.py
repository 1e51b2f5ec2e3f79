"""The commands of a submitter: ``submit``, ``get``, ``cancel``, ``rerun``, ``jobs`` and
``events``, each a call of the Python client against ``ORCHESTRATOR_API_URL``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cli import batches, output
from cli.arguments import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Commands,
    add_filters,
    add_json_flag,
    job_id,
    json_object,
    positive,
)
from orchestrator_core.exceptions import ApiError
from orchestrator_core.flow import MAX_PRIORITY
from orchestrator_core.models import MAX_BATCH_JOBS
from orchestrator_core.settings import load_settings
from orchestrator_core.states import State

if TYPE_CHECKING:
    from orchestrator_client import Client


def add_commands(commands: Commands) -> None:
    _add_submit(commands)
    _add_get(commands)
    _add_cancel(commands)
    _add_rerun(commands)
    _add_jobs(commands)
    _add_events(commands)


def _add_submit(commands: Commands) -> None:
    command = commands.add_parser(
        "submit",
        help="submit a job through the API",
        description="Submit a job to the API at ORCHESTRATOR_API_URL. With --wait, follow its "
        "event stream until it ends: exit 0 when it COMPLETED, 1 when it FAILED or was "
        "CANCELLED. With --batch, submit the jobs of a file instead, in batches.",
    )
    command.add_argument("type", metavar="TYPE", nargs="?", help="the job type, e.g. demo.echo")
    command.add_argument(
        "payload",
        metavar="PAYLOAD_JSON",
        nargs="?",
        type=json_object,
        help="the payload, a JSON object",
    )
    command.add_argument(
        "--batch",
        metavar="FILE",
        type=batches.open_jobs,
        help='jobs to submit, a JSON object {"type": ..., "payload": {...}} per line '
        f"(- reads standard input); each batch of up to {MAX_BATCH_JOBS} is created whole "
        "or not at all",
    )
    command.add_argument(
        "--wait", action="store_true", help="follow the job, a line per change, until it ends"
    )
    command.add_argument(
        "--max-attempts", type=positive, metavar="N", help="override the type's max_attempts"
    )
    command.add_argument(
        "--idempotency-key",
        metavar="K",
        help="sent as Idempotency-Key: repeating the request returns the first job",
    )
    command.add_argument(
        "--priority",
        type=priority,
        metavar="P",
        help=f"0..{MAX_PRIORITY}, higher starts first among waiting jobs (default: the type's)",
    )
    command.add_argument(
        "--key",
        dest="concurrency_key",
        metavar="K",
        help="the concurrency key the type's per-key limits count by, e.g. a tenant id",
    )
    when = command.add_mutually_exclusive_group()
    when.add_argument(
        "--delay", type=seconds, metavar="S", help="start no sooner than S seconds from now"
    )
    when.add_argument(
        "--run-at",
        metavar="TIME",
        help="start no sooner than TIME, RFC 3339 with its offset: 2026-01-01T12:00:00Z",
    )
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_submit))


def _submit(client: Client, args: argparse.Namespace) -> int:
    if args.batch is not None:
        return _submit_batch(client, args)
    if args.type is None or args.payload is None:
        print(
            "orchestrator: error: name a TYPE and a PAYLOAD_JSON, or give --batch FILE",
            file=sys.stderr,
        )
        return EXIT_USAGE
    job = client.submit(
        args.type,
        args.payload,
        max_attempts=args.max_attempts,
        idempotency_key=args.idempotency_key,
        priority=args.priority,
        concurrency_key=args.concurrency_key,
        delay=args.delay,
        run_at=args.run_at,
    )
    if not args.wait:
        _print_job(job, args, output.summary(job))
        return EXIT_OK
    last = ""

    def show(update: dict[str, Any]) -> None:
        nonlocal last
        line = output.summary(update)
        if line != last and not args.json:
            print(line, flush=True)
        last = line

    show(job)
    try:
        job = client.wait(job["id"], on_update=show)
    except KeyboardInterrupt:
        print(f"orchestrator: stopped waiting; job {job['id']} carries on", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_job(job, args, *output.outcome(job))
    return EXIT_OK if job.get("state") == State.COMPLETED else EXIT_FAILED


def _submit_batch(client: Client, args: argparse.Namespace) -> int:
    per_job = (args.max_attempts, args.priority, args.concurrency_key, args.delay, args.run_at)
    if args.type is not None or args.wait or any(value is not None for value in per_job):
        print(
            "orchestrator: error: --batch takes its jobs from the file alone (no TYPE, "
            "PAYLOAD_JSON, --wait, --max-attempts, --priority, --key, --delay or --run-at)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    submitted = 0
    for job in batches.submit_all(client, args.batch, idempotency_key=args.idempotency_key):
        print(json.dumps(job) if args.json else output.summary(job), flush=True)
        submitted += 1
    if not args.json:
        print(f"submitted {submitted} job(s)", file=sys.stderr)
    return EXIT_OK


def _add_get(commands: Commands) -> None:
    command = commands.add_parser(
        "get",
        help="show a job",
        description="Show a job's state, result or error, and history, as the API has it.",
    )
    command.add_argument("job_id", metavar="ID", type=job_id, help="the job's id")
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_get))


def _get(client: Client, args: argparse.Namespace) -> int:
    job = client.get(args.job_id)
    _print_job(job, args, *output.details(job), *_flow(job))
    return EXIT_OK


def _flow(job: dict[str, Any]) -> list[str]:
    """What holds the job back or where it came from, when anything does."""
    shown = [
        f"{label} {job[name]}"
        for label, name in (
            ("priority", "priority"),
            ("key", "concurrency_key"),
            ("not before", "not_before"),
            ("waiting for", "waiting"),
            ("re-run of", "rerun_of"),
            ("schedule", "schedule"),
        )
        if job.get(name)
    ]
    return ["  ".join(shown)] if shown else []


def _add_cancel(commands: Commands) -> None:
    command = commands.add_parser(
        "cancel",
        help="cancel a job",
        description="Cancel a job: at once unless it is RUNNING, where its worker is told to "
        "stop. Exits 1 if the job had already COMPLETED or FAILED.",
    )
    command.add_argument("job_id", metavar="ID", type=job_id, help="the job's id")
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_cancel))


def _cancel(client: Client, args: argparse.Namespace) -> int:
    status, job = client.cancel(args.job_id)
    _print_job(job, args, output.summary(job), *output.outcome(job))
    if status == 409:
        print(
            f"orchestrator: job {job.get('id')} had already {job.get('state')}; not cancelled",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _add_rerun(commands: Commands) -> None:
    command = commands.add_parser(
        "rerun",
        help="run a finished job again, as a new job",
        description="Submit a new job with the type, payload, priority and key of a job that "
        "COMPLETED, FAILED or was CANCELLED, and print it. Exits 1 if the job has not "
        "finished.",
    )
    command.add_argument("job_id", metavar="ID", type=job_id, help="the finished job's id")
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_rerun))


def _rerun(client: Client, args: argparse.Namespace) -> int:
    try:
        job = client.rerun(args.job_id)
    except ApiError as exc:
        if exc.status != 409:
            raise
        current = client.get(args.job_id)  # the 409's body is the document, not a detail
        print(
            f"orchestrator: error: job {current.get('id')} is {current.get('state')}: only a "
            "finished job can be re-run",
            file=sys.stderr,
        )
        return EXIT_FAILED
    _print_job(job, args, output.summary(job), *_flow(job))
    return EXIT_OK


def _add_jobs(commands: Commands) -> None:
    command = commands.add_parser(
        "jobs",
        help="list jobs, newest first",
        description="List jobs newest first, a page at a time, filtered by state and/or type.",
    )
    add_filters(command, state_help="only jobs in this state", type_help="only jobs of this type")
    command.add_argument(
        "--limit", type=positive, default=50, metavar="N", help="jobs per page (default 50)"
    )
    command.add_argument(
        "--cursor", metavar="C", help="where the page starts: the previous page's next cursor"
    )
    add_json_flag(command)
    command.set_defaults(handler=_with_client(_jobs))


def _jobs(client: Client, args: argparse.Namespace) -> int:
    page = client.jobs(state=args.state, type=args.type, limit=args.limit, cursor=args.cursor)
    if args.json:
        print(output.as_json(page))
    else:
        print("\n".join(output.page(page)))
    return EXIT_OK


def _add_events(commands: Commands) -> None:
    command = commands.add_parser(
        "events",
        help="print job transitions as they happen",
        description="Follow the API's event stream and print a line for each job "
        "transition from now on, until interrupted. Reconnects after a dropped connection "
        "without missing any.",
    )
    add_filters(
        command,
        state_help="only transitions into this state",
        type_help="only transitions of jobs of this type",
    )
    command.add_argument(
        "--after",
        metavar="ID",
        help="start after this event id (as printed with --json), replaying what followed it",
    )
    command.add_argument(
        "--json", action="store_true", help="print each event's JSON object, one per line"
    )
    command.set_defaults(handler=_with_client(_events))


def _events(client: Client, args: argparse.Namespace) -> int:
    def gap(comment: str) -> None:
        print(f"orchestrator: warning: {comment}", file=sys.stderr, flush=True)

    stream = client.events(type=args.type, state=args.state, last_event_id=args.after, on_gap=gap)
    for event in stream:
        line = json.dumps(event) if args.json else output.event_line(event)
        print(line, flush=True)
    return EXIT_OK


def priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_PRIORITY:
        raise argparse.ArgumentTypeError(f"a priority is 0 to {MAX_PRIORITY}, not {text!r}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more, not {text}")
    return value


def _with_client(
    run: Callable[[Client, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A handler that calls ``run`` with a client of the configured API; an API error (or an
    API that cannot be reached) becomes one line on stderr and exit 1, never a traceback."""

    def handler(args: argparse.Namespace) -> int:
        from orchestrator_client import ApiError, Client  # httpx loads only for these

        try:
            with Client.from_settings(load_settings()) as client:
                return run(client, args)
        except ApiError as exc:
            print(f"orchestrator: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("orchestrator: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return handler


def _print_job(job: dict[str, Any], args: argparse.Namespace, *lines: str) -> None:
    """The document itself with ``--json``, else ``lines`` for a person."""
    print(output.as_json(job) if args.json else "\n".join(lines))
