"""``orchestrator worker`` and ``orchestrator api``: the two services, started from here.

The command line is the composition root: the only code that imports both ``api`` and
``worker``, each only when its command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from cli.arguments import EXIT_OK, EXIT_USAGE, Commands, names, port, positive
from orchestrator_core.exceptions import UnknownJobTypeError
from orchestrator_core.settings import load_settings


def add_commands(commands: Commands) -> None:
    _add_worker(commands)
    _add_api(commands)


def _add_worker(commands: Commands) -> None:
    command = commands.add_parser(
        "worker",
        help="run jobs of the installed job types",
        description="Consume the queues of the job types installed here (or only those "
        "given) and run their jobs; also sweeps due retries and lost jobs.",
    )
    command.add_argument(
        "--concurrency",
        type=positive,
        default=os.cpu_count() or 1,
        metavar="N",
        help="jobs run at once, one process each (default: the number of CPUs)",
    )
    command.add_argument(
        "--types",
        type=names,
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


def _add_api(commands: Commands) -> None:
    command = commands.add_parser(
        "api",
        help="serve the REST API",
        description="Serve the REST control plane (DESIGN section 5) with uvicorn.",
    )
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    command.add_argument("--port", type=port, default=8000, help="port (default 8000)")
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
