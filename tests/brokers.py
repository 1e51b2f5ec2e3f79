"""A RabbitMQ node of a test's own, for broker settings the machine's node must keep.

``consumer_timeout`` and the channel tick are node-wide: a test that needs them short
starts its own node with its own name, ports, data, logs and configuration, listening
on loopback only and loading no plugin. It is started in the foreground (so we hold its
PID) and stopped by that PID at the end, together with every process it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kombu import Connection
from processes import free_port
from services import unavailable

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def server_script() -> Path | None:
    """The ``rabbitmq-server`` script itself, not the distribution's wrapper, which
    switches to the ``rabbitmq`` user (who cannot write to a test's directory)."""
    found = shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None
    )
    if found is None:
        return None
    beside = Path(found).resolve().parent / "rabbitmq-server"
    return beside if beside.exists() else Path(found)


@dataclass
class RabbitNode:
    """A private RabbitMQ node under ``directory``; ``start`` it, and always ``stop`` it.

    :param consumer_timeout_ms: how long a delivery may stay unacknowledged before the
        node closes its channel (RabbitMQ's default is 30 minutes).
    :param channel_tick_ms: how often the node checks that timeout (default a minute);
        short, so the timeout is enforced close to when it falls due.
    :param config_lines: more lines of ``rabbitmq.conf`` (a TLS listener, say).
    :param cookie: the Erlang cookie, for nodes that are to form a cluster (which share
        one); by default the node makes its own.
    """

    directory: Path
    consumer_timeout_ms: int | None = None
    channel_tick_ms: int | None = None
    config_lines: tuple[str, ...] = ()
    cookie: str | None = None
    name: str = field(default_factory=lambda: f"orchtest-{uuid.uuid4().hex[:10]}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log(self) -> Path:
        return self.directory / "rabbitmq-server.out"

    def env(self) -> dict[str, str]:
        """The variables the server and ``rabbitmqctl`` read: everything of this node's own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            # The Erlang cookie is created in, and read from, $HOME.
            HOME=str(self.directory),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.directory / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.directory / "log"),
            RABBITMQ_CONFIG_FILE=str(self.directory / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.directory / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.directory / "enabled_plugins"),
            # Not the machine's rabbitmq-env.conf, which names the machine's node.
            RABBITMQ_CONF_ENV_FILE=str(self.directory / "rabbitmq-env.conf"),
            # Erlang distribution on loopback only, through the machine's epmd.
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"listeners.tcp.default = 127.0.0.1:{self.port}"]
        if self.consumer_timeout_ms is not None:
            lines.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        lines.extend(self.config_lines)
        (self.directory / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        rabbit = []
        if self.channel_tick_ms is not None:
            rabbit.append(f"{{channel_tick_interval, {self.channel_tick_ms}}}")
        (self.directory / "advanced.config").write_text(f"[{{rabbit, [{', '.join(rabbit)}]}}].\n")
        (self.directory / "enabled_plugins").write_text("")
        (self.directory / "rabbitmq-env.conf").write_text("")
        if self.cookie is not None:
            # Erlang refuses a cookie file that others may read.
            path = self.directory / ".erlang.cookie"
            if path.exists():
                path.chmod(0o600)
            path.write_text(self.cookie)
            path.chmod(0o400)

    def start(self) -> None:
        """Start the node and wait until it accepts AMQP connections.

        Skipped locally (failed in CI) when RabbitMQ is not installed.
        :raises RuntimeError: with the end of the node's output, when it does not come up.
        """
        script = server_script()
        if script is None:
            unavailable("rabbitmq-server", "PATH", FileNotFoundError("rabbitmq-server"))
            return
        self._write_config()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(script)],
                env=self.env(),
                cwd=self.directory,  # where Erlang would write a crash dump
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{output}")
            time.sleep(0.2)

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
        except OSError:
            return False
        with Connection(self.url, connect_timeout=2) as connection:
            try:
                connection.ensure_connection(max_retries=1)
            except Exception:  # kombu raises the transport's own errors
                return False
        return True

    def stop(self) -> None:
        """SIGTERM to the server script (it stops the node), SIGKILL to whatever of it is
        left after the timeout; then check that no process it started is still alive.

        :raises RuntimeError: naming the processes that outlived SIGKILL.
        """
        process, self.process = self.process, None
        if process is None:
            return
        family = descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        family |= descendants(process.pid)
        deadline = time.monotonic() + 10
        while (alive := {pid for pid in family if running(pid)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        survivors = {pid for pid in alive if running(pid)}
        if survivors:
            raise RuntimeError(f"processes of RabbitMQ node {self.name} survived: {survivors}")

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node; returns its output."""
        script = server_script()
        assert script is not None
        completed = subprocess.run(
            [str(script.parent / "rabbitmqctl"), "-n", self.name, "-q", *args],
            env=self.env(),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return completed.stdout

    def queue_counts(self, queue: str) -> tuple[int, int]:
        """``(ready, unacknowledged)`` messages of ``queue``."""
        columns = ("name", "messages_ready", "messages_unacknowledged")
        output = self.ctl("list_queues", "--no-table-headers", *columns)
        for line in output.splitlines():
            fields = line.split()
            if fields and fields[0] == queue:
                return int(fields[1]), int(fields[2])
        raise AssertionError(f"no queue {queue!r} on node {self.name}:\n{output}")


def descendants(pid: int) -> set[int]:
    """``pid``'s children, grandchildren and so on, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name, in parentheses, may hold spaces: split after its end.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.update(children)
        frontier.extend(children)
    return found


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
