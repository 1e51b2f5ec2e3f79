"""The store script: its source, put together from ``lua/``, and the one way to call it.

The script is ``lua/prelude.lua`` (keys, arguments, the clock and the one ``move``),
then one file per group of operations, then ``lua/main.lua``, which dispatches a call
to its operation. The state names, the transition table, the named sets of states and
the histogram bounds are written into it from ``states.py`` and ``telemetry/metrics.py``,
so Python and Redis cannot disagree about them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

from orchestrator_core.states import STARTABLE_STATES, TERMINAL_STATES, TRANSITIONS, State
from orchestrator_core.store.connection import ThreadConnections, redis_errors
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.replies import refusal
from orchestrator_core.telemetry.metrics import HISTOGRAMS

PARTS = (
    "prelude",
    "flow",
    "metrics",
    "submission",
    "reading",
    "dispatch",
    "attempts",
    "cancel",
    "retention",
    "main",
)
"""The files of ``lua/`` in the order they make the script."""


def _lua_set(states: Iterable[State]) -> str:
    return _lua_table((state.value, "true") for state in sorted(states))


def _lua_numbers(bounds: Iterable[float]) -> str:
    return "{" + ", ".join(repr(float(bound)) for bound in bounds) + "}"


def _lua_table(entries: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{name} = {value}" for name, value in entries) + "}"


def tables() -> dict[str, str]:
    """What each ``--[[NAME]]`` placeholder of the script is replaced with."""
    return {
        "STATES": _lua_table((s.value, f"'{s.value}'") for s in State),
        "TRANSITIONS": _lua_table((s.value, _lua_set(TRANSITIONS[s])) for s in State),
        "STARTABLE": _lua_set(STARTABLE_STATES),
        "TERMINAL": _lua_set(TERMINAL_STATES),
        "BUCKETS": _lua_table(
            (name, _lua_numbers(spec.bounds)) for name, spec in HISTOGRAMS.items()
        ),
    }


def template() -> str:
    """The script as written in ``lua/``, before the tables are filled in."""
    folder = resources.files("orchestrator_core.store").joinpath("lua")
    return "\n".join(folder.joinpath(f"{part}.lua").read_text(encoding="utf-8") for part in PARTS)


SHEBANG = "#!lua\n"
"""Declares the script (with no flags) one that writes: a server that is a replica now
refuses it before it runs (READONLY), where a script without it would run there and
answer from a replica's data, say "no such job" from one that is still syncing after a
failover demoted it; the refusal sends the call to the primary instead."""


@cache
def source() -> str:
    """The script that Redis runs."""
    text = SHEBANG + template()
    for name, table in tables().items():
        placeholder = f"--[[{name}]]"
        if placeholder not in text:
            raise RuntimeError(f"the store script has no {placeholder} to fill in")
        text = text.replace(placeholder, table)
    return text


class StoreScript:
    """The store script registered on one client, called for one job (or none) at a time.

    Every call passes the same twelve keys and the same argument layout (see the top of
    ``lua/prelude.lua``); only the operation, the job and its arguments change.

    :param retention_ms: how long a job that finishes is kept (0: for good).
    :param retention_by_type: the job types whose retention differs from it.
    :param replicas: with more than 0, each call returns once that many replicas have
        its writes (``WAIT``), or fails past ``replica_timeout`` seconds.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        events_max_length: int,
        retention_ms: int = 0,
        retention_by_type: Mapping[str, int] | None = None,
        replicas: int = 0,
        replica_timeout: float = 0.1,
    ) -> None:
        self.keys = keys
        self.events_max_length = events_max_length
        self._connections = ThreadConnections(
            client, replicas=replicas, replica_timeout=replica_timeout
        )
        self._script = client.register_script(source())
        # The same for every call, in the order the top of lua/prelude.lua gives.
        self._shared_keys = (
            keys.sequence,
            keys.leases,
            keys.retries,
            keys.outbox,
            keys.events,
            keys.metrics,
            keys.job_types,
            keys.legacy_dispatch,
            keys.expiries,
            keys.expiry_walk,
        )
        self._stems = (keys.job_stem, keys.index_type_base, keys.cancel_channel)
        self._events_cap = str(events_max_length)
        # Sent with every call, so that no operation that finishes a job can leave out
        # its expiry: whichever process finishes it, the retention in effect there counts.
        self._retention: dict[str, Any] = {"keep_ms": retention_ms}
        if retention_by_type:
            self._retention["keep_types"] = dict(retention_by_type)

    def __call__(
        self,
        op: str,
        job_id: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        blob: str = "",
        *,
        target: State | None = None,
        client: redis.client.Pipeline | None = None,
        extra: Sequence[str] = (),
    ) -> Any:
        """Run ``op`` for ``job_id`` and return the script's ``ok`` reply.

        :param action: what the call does, for the error when Redis does not answer.
        :param args: small arguments, sent as one JSON object (None values left out).
        :param blob: a JSON document (a payload, a result or progress).
        :param target: the state asked for, named when the move is refused.
        :param client: a pipeline to queue the call on; the call then returns None.
        :param extra: arguments after the fixed ones (the payloads of a ``create``).
        :raises StoreUnavailableError: Redis did not answer.
        :raises OrchestratorError: the refusal the script replied with (see ``replies.py``).
        """
        keys = self.keys
        small = {k: v for k, v in (args or {}).items() if v is not None}
        small.update(self._retention)
        names = [keys.job(job_id), keys.history(job_id), *self._shared_keys]
        values = [op, job_id, *self._stems, json.dumps(small, separators=(",", ":")), blob]
        values.append(self._events_cap)
        values.extend(extra)
        with redis_errors(action):
            if client is not None:
                # A pipeline loads the script first if Redis lacks it.
                self._script(keys=names, args=values, client=client)
                return None
            try:
                reply = self._connections.execute(
                    "EVALSHA", self._script.sha, len(names), *names, *values
                )
            except redis.exceptions.NoScriptError:
                # Redis restarted (or was flushed, or a replica without it was promoted)
                # since the script was loaded. This one call goes through the client's pool
                # and is not waited for (``replicas``); the calls after it are.
                reply = self._script(keys=names, args=values)
        if client is not None:
            return None
        if reply[0] == "err":
            presented = small.get("fence", small.get("owner"))
            raise refusal(job_id, reply[1:], target, presented=presented)
        return reply
