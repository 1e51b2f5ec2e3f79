"""``orchestrator worker`` and ``orchestrator api``: the two services, started from here.

The command line is the composition root: the only code that imports both ``api`` and
``worker``, each only when its command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cli.arguments import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Commands, names, port, positive
from cli.exposure import open_api_warning
from orchestrator_core.exceptions import BrokerUnavailableError, UnknownJobTypeError
from orchestrator_core.settings import load_settings
from orchestrator_core.telemetry.logs import log_config

logger = logging.getLogger(__name__)

DEFAULT_API_WORKERS = max(1, (os.cpu_count() or 1) // 2)
"""Server processes of ``orchestrator api`` unless --workers says otherwise: half the
cores, the other half being Redis's, RabbitMQ's and the workers'. On 2 cores that is
one: a second process there gained under a tenth (1,620 -> 1,740 POST /jobs a second)
and cost a quarter more p99, its core already busy with Redis and RabbitMQ."""


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
    except BrokerUnavailableError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _add_api(commands: Commands) -> None:
    command = commands.add_parser(
        "api",
        help="serve the REST API",
        description="Serve the REST control plane (DESIGN section 5) with uvicorn.",
    )
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    command.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    command.add_argument(
        "--workers",
        type=positive,
        default=DEFAULT_API_WORKERS,
        metavar="N",
        help=f"server processes (default {DEFAULT_API_WORKERS}); with more than one, their "
        "request metrics are summed through PROMETHEUS_MULTIPROC_DIR (a fresh directory "
        "of their own unless it is set)",
    )
    command.set_defaults(handler=_api)


def _api(args: argparse.Namespace) -> int:
    settings = load_settings()
    # Before any socket exists: an open API on a public address must never listen.
    warning = open_api_warning(settings, args.host)
    if warning is not None:
        logger.warning("%s", warning)

    import uvicorn  # the server's dependencies load only for this command

    from api.main import create_app

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level.lower(),
        # Uvicorn's own lines and access log in the deployment's format, in every process.
        "log_config": log_config(settings.log_format, args.log_level),
        # Every request is counted and timed in /metrics; a line each only when asked for.
        "access_log": args.log_level in ("DEBUG", "INFO"),
        # Bodies are limited by the app; keep-alive and shutdown bounded so nothing hangs.
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 10,
    }
    if args.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return EXIT_OK
    with _metrics_directory():
        create_app(settings)  # a bad setting or plugin stops us here, not in every process
        uvicorn.run("api.main:create_app", factory=True, workers=args.workers, **options)
    return EXIT_OK


@contextmanager
def _metrics_directory() -> Iterator[None]:
    """A multiprocess directory for the server processes' request metrics: the operator's
    (``PROMETHEUS_MULTIPROC_DIR``), or a fresh one removed when they stop."""
    from api.metrics import MULTIPROCESS_VARIABLE

    if os.environ.get(MULTIPROCESS_VARIABLE):
        yield
        return
    directory = tempfile.mkdtemp(prefix="orchestrator-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_VARIABLE]
        shutil.rmtree(directory, ignore_errors=True)
