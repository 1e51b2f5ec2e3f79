"""A RabbitMQ cluster of a test module's own: three :class:`RabbitNode` on loopback, each
with its own name, ports and data, one Erlang cookie between them, joined with
``rabbitmqctl join_cluster``. Every node is started in the foreground and stopped by its
PID; a node stopped during a test is started again by :meth:`RabbitCluster.heal`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokers import RabbitNode

SIZE = 3
JOIN_TIMEOUT = 60.0


@dataclass
class RabbitCluster:
    """``size`` nodes under ``directory``; ``start`` it, and always ``stop`` it."""

    directory: Path
    size: int = SIZE
    nodes: list[RabbitNode] = field(init=False)

    def __post_init__(self) -> None:
        cookie = uuid.uuid4().hex.upper()
        self.nodes = [
            RabbitNode(self.directory / f"node{n}", cookie=cookie) for n in range(self.size)
        ]

    @property
    def first(self) -> RabbitNode:
        return self.nodes[0]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as ``ORCHESTRATOR_BROKER_URL`` takes them."""
        return ",".join(self.urls)

    def running(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.process is not None]

    def start(self) -> None:
        """Boot the nodes side by side, then join each to the first.

        :raises RuntimeError: a node did not start, or the cluster did not form.
        """
        try:
            self._boot(self.nodes)
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("reset")
                node.ctl("join_cluster", self.first.name)
                node.ctl("start_app")
            self.wait_formed()
        except BaseException:
            self.stop()
            raise

    def wait_formed(self) -> None:
        """Wait until every running node sees all the running ones as running."""
        expected = {node.name for node in self.running()}
        deadline = time.monotonic() + JOIN_TIMEOUT
        for node in self.running():
            node.ctl("await_startup")
            while (seen := self.running_nodes(node)) != expected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} sees {seen}, not {expected}")
                time.sleep(0.5)

    def running_nodes(self, node: RabbitNode) -> set[str]:
        """The cluster's running nodes as ``node`` sees them."""
        status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    def heal(self) -> None:
        """Start again every node a test stopped (each rejoins the cluster by itself)."""
        stopped = [node for node in self.nodes if node.process is None]
        if stopped:
            self._boot(stopped)
            self.wait_formed()

    def stop(self) -> None:
        """Stop every node by its PID, all of them even if one fails to stop.

        :raises RuntimeError: naming the nodes whose processes survived.
        """
        problems = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except RuntimeError as exc:
                problems.append(str(exc))
        if problems:
            raise RuntimeError("; ".join(problems))

    def listing(self, what: str, *columns: str) -> list[dict[str, Any]]:
        """``rabbitmqctl list_<what> <columns>`` on a running node, cluster-wide: a dict
        per row, keyed by column."""
        node = self.running()[0]
        return list(json.loads(node.ctl(f"list_{what}", "--formatter", "json", *columns)))

    def queues(self, *columns: str) -> dict[str, dict[str, Any]]:
        """Each queue's ``columns``, by name."""
        return {row["name"]: row for row in self.listing("queues", "name", *columns)}

    def connections(self, node: RabbitNode) -> int:
        """How many AMQP connections ``node`` holds."""
        return sum(row["port"] == node.port for row in self.listing("connections", "port"))

    @staticmethod
    def _boot(nodes: list[RabbitNode]) -> None:
        failures: list[BaseException] = []

        def boot(node: RabbitNode) -> None:
            try:
                node.start()
            except BaseException as exc:  # handed to the caller's thread below
                failures.append(exc)

        threads = [threading.Thread(target=boot, args=(node,)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
