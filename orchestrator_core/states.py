"""The job states, the transition table and the named sets of states: the only place
where state names are written.

The Redis script that enforces the machine receives all of them from here (see
``store/script.py``), and the API serves them to the dashboard (``GET /states``), so
neither the script nor the pages can drift from this table.
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
"""The states nothing leaves: COMPLETED, FAILED, CANCELLED."""

STARTABLE_STATES: frozenset[State] = frozenset(
    s for s, targets in TRANSITIONS.items() if State.RUNNING in targets
)
"""The states a job waits in for its next attempt (CREATED, RETRYING): a message for it
may start it, and a cancel request cancels it at once."""

CANCELLABLE_STATES: frozenset[State] = frozenset(
    s for s, targets in TRANSITIONS.items() if State.CANCELLED in targets
)
"""The states a cancel request has an effect in (CREATED, RUNNING, RETRYING); in RUNNING
it asks the worker to stop."""


SUCCEEDED_STATE: State = State.COMPLETED
"""The terminal state of a job whose ``execute`` returned: the one that holds a result."""


def allowed(current: State, requested: State) -> bool:
    """Whether the table lets a job move from ``current`` to ``requested``."""
    return requested in TRANSITIONS[current]
