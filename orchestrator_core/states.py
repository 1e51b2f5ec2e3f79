"""The job states and the transition table: the only place where state names are written.

The Redis script that enforces the machine is generated from :data:`TRANSITIONS`, so
the table cannot drift between Python and Redis.
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator_core.exceptions import InvalidQueryError


class State(StrEnum):
    """Where a job is in its life."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True for the states that nothing leaves."""
        return not TRANSITIONS[self]

    @classmethod
    def parse(cls, name: str) -> State:
        """Return the state called ``name``.

        :raises InvalidQueryError: naming the valid states.
        """
        try:
            return cls(name)
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise InvalidQueryError(f"unknown state {name!r}; valid states: {valid}") from None


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.RUNNING, State.CANCELLED, State.FAILED}),
    State.RUNNING: frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.RETRYING}),
    State.RETRYING: frozenset({State.RUNNING, State.CANCELLED, State.FAILED}),
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}

TERMINAL_STATES: frozenset[State] = frozenset(
    s for s, targets in TRANSITIONS.items() if not targets
)


def allowed(current: State, requested: State) -> bool:
    """Whether the table lets a job move from ``current`` to ``requested``."""
    return requested in TRANSITIONS[current]
