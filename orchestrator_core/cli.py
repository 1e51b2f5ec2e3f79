"""The ``orchestrator`` command (DESIGN section 7).

Each subcommand is one ``_add_<name>`` function that declares its arguments and
sets ``handler``: a function taking the parsed arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator_core import client_output
from orchestrator_core.exceptions import ConfigurationError, UnknownJobTypeError
from orchestrator_core.job_type import JobType
from orchestrator_core.plugins import Plugins, load_plugins
from orchestrator_core.scaffold import PluginNames, create_plugin
from orchestrator_core.settings import load_settings
from orchestrator_core.states import State

if TYPE_CHECKING:
    from orchestrator_core.client import Client

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
"""Also what argparse uses for bad arguments; a bad setting is the same kind of mistake."""
EXIT_INTERRUPTED = 130
"""What a shell reports for a command stopped by Ctrl-C."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(levelname)s %(name)s: %(message)s",
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
    _add_plugins(commands)
    _add_worker(commands)
    _add_api(commands)
    _add_submit(commands)
    _add_get(commands)
    _add_cancel(commands)
    _add_jobs(commands)
    _add_events(commands)
    return parser


def _add_plugins(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_plugins_new(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_worker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "worker",
        help="run jobs of the installed job types",
        description="Consume the queues of the job types installed here (or only those "
        "given) and run their jobs; also sweeps due retries and lost jobs.",
    )
    command.add_argument(
        "--concurrency",
        type=_positive,
        default=os.cpu_count() or 1,
        metavar="N",
        help="jobs run at once, one process each (default: the number of CPUs)",
    )
    command.add_argument(
        "--types",
        type=_names,
        default=None,
        metavar="A,B",
        help="comma-separated job types to serve (default: all installed)",
    )
    command.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from worker.main import run_worker  # the worker's dependencies load only for this command

    try:
        return run_worker(
            load_settings(),
            concurrency=args.concurrency,
            types=args.types,
            loglevel=args.log_level if args.log_level != "WARNING" else "INFO",
        )
    except UnknownJobTypeError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _add_api(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "api",
        help="serve the REST API",
        description="Serve the REST control plane (DESIGN section 5) with uvicorn.",
    )
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    command.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    command.set_defaults(handler=_api)


def _api(args: argparse.Namespace) -> int:
    import uvicorn  # the server's dependencies load only for this command

    from api.main import create_app

    app = create_app(load_settings())
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        # Bodies are limited by the app; keep-alive and shutdown bounded so nothing hangs.
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return EXIT_OK


def _add_submit(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "submit",
        help="submit a job through the API",
        description="Submit a job to the API at ORCHESTRATOR_API_URL. With --wait, follow its "
        "event stream until it ends: exit 0 when it COMPLETED, 1 when it FAILED or was "
        "CANCELLED.",
    )
    command.add_argument("type", metavar="TYPE", help="the job type, e.g. demo.echo")
    command.add_argument(
        "payload", metavar="PAYLOAD_JSON", type=_json_object, help="the payload, a JSON object"
    )
    command.add_argument(
        "--wait", action="store_true", help="follow the job, a line per change, until it ends"
    )
    command.add_argument(
        "--max-attempts", type=_positive, metavar="N", help="override the type's max_attempts"
    )
    command.add_argument(
        "--idempotency-key",
        metavar="K",
        help="sent as Idempotency-Key: repeating the request returns the first job",
    )
    _add_json_flag(command)
    command.set_defaults(handler=_with_client(_submit))


def _submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(
        args.type,
        args.payload,
        max_attempts=args.max_attempts,
        idempotency_key=args.idempotency_key,
    )
    if not args.wait:
        _print_job(job, args, client_output.summary(job))
        return EXIT_OK
    last = ""

    def show(update: dict[str, Any]) -> None:
        nonlocal last
        line = client_output.summary(update)
        if line != last and not args.json:
            print(line, flush=True)
        last = line

    show(job)
    try:
        job = client.wait(job["id"], on_update=show)
    except KeyboardInterrupt:
        print(f"orchestrator: stopped waiting; job {job['id']} carries on", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_job(job, args, *client_output.outcome(job))
    return EXIT_OK if job.get("state") == State.COMPLETED else EXIT_FAILED


def _add_get(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "get",
        help="show a job",
        description="Show a job's state, result or error, and history, as the API has it.",
    )
    command.add_argument("job_id", metavar="ID", type=_job_id, help="the job's id")
    _add_json_flag(command)
    command.set_defaults(handler=_with_client(_get))


def _get(client: Client, args: argparse.Namespace) -> int:
    job = client.get(args.job_id)
    _print_job(job, args, *client_output.details(job))
    return EXIT_OK


def _add_cancel(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "cancel",
        help="cancel a job",
        description="Cancel a job: at once unless it is RUNNING, where its worker is told to "
        "stop. Exits 1 if the job had already COMPLETED or FAILED.",
    )
    command.add_argument("job_id", metavar="ID", type=_job_id, help="the job's id")
    _add_json_flag(command)
    command.set_defaults(handler=_with_client(_cancel))


def _cancel(client: Client, args: argparse.Namespace) -> int:
    status, job = client.cancel(args.job_id)
    _print_job(job, args, client_output.summary(job), *client_output.outcome(job))
    if status == 409:
        print(
            f"orchestrator: job {job.get('id')} had already {job.get('state')}; not cancelled",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _add_jobs(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "jobs",
        help="list jobs, newest first",
        description="List jobs newest first, a page at a time, filtered by state and/or type.",
    )
    _add_filters(command, state_help="only jobs in this state", type_help="only jobs of this type")
    command.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="jobs per page (default 50)"
    )
    command.add_argument(
        "--cursor", metavar="C", help="where the page starts: the previous page's next cursor"
    )
    _add_json_flag(command)
    command.set_defaults(handler=_with_client(_jobs))


def _jobs(client: Client, args: argparse.Namespace) -> int:
    page = client.jobs(state=args.state, type=args.type, limit=args.limit, cursor=args.cursor)
    if args.json:
        print(client_output.as_json(page))
    else:
        print("\n".join(client_output.page(page)))
    return EXIT_OK


def _add_events(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "events",
        help="print job transitions as they happen",
        description="Follow the API's event stream and print a line for each job "
        "transition from now on, until interrupted. Reconnects after a dropped connection "
        "without missing any.",
    )
    _add_filters(
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
        line = json.dumps(event) if args.json else client_output.event_line(event)
        print(line, flush=True)
    return EXIT_OK


def _add_filters(command: argparse.ArgumentParser, *, state_help: str, type_help: str) -> None:
    """``--state`` (any case) and ``--type``, with their help texts."""
    command.add_argument(
        "--state",
        type=str.upper,
        choices=[state.value for state in State],
        help=f"{state_help} (any case)",
    )
    command.add_argument("--type", metavar="T", help=type_help)


def _add_json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="print the API's JSON on stdout, nothing else"
    )


def _with_client(
    run: Callable[[Client, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A handler that calls ``run`` with a client of the configured API; an API error (or an
    API that cannot be reached) becomes one line on stderr and exit 1, never a traceback."""

    def handler(args: argparse.Namespace) -> int:
        from orchestrator_core.client import ApiError, Client  # httpx loads only for these

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
    print(client_output.as_json(job) if args.json else "\n".join(lines))


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = client_output.json_kind(value)
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, not {kind}")
    return value


def _job_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a job id cannot be empty")
    return text.strip()


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one job type")
    return names


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
