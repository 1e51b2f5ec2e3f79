"""``/states``: the job states, the transition table and the named sets of states.

Served from ``orchestrator_core/states.py``, the one table the store script also
receives, so the dashboard (and any client) never writes a state name of its own.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Authorized
from api.schemas import StatesPublic
from orchestrator_core.states import (
    CANCELLABLE_STATES,
    STARTABLE_STATES,
    SUCCEEDED_STATE,
    TERMINAL_STATES,
    TRANSITIONS,
    State,
)

router = APIRouter(tags=["states"], dependencies=[Authorized])


def _in_order(states: frozenset[State]) -> list[State]:
    return [state for state in State if state in states]


STATES = StatesPublic(
    states=list(State),
    transitions={state: _in_order(TRANSITIONS[state]) for state in State},
    terminal=_in_order(TERMINAL_STATES),
    startable=_in_order(STARTABLE_STATES),
    cancellable=_in_order(CANCELLABLE_STATES),
    succeeded=SUCCEEDED_STATE,
)


@router.get(
    "/states",
    response_model=StatesPublic,
    responses={401: {"description": "missing or wrong API key"}},
)
async def states() -> StatesPublic:
    """Every state in the order a job can pass through them, where each may lead, and the
    sets: terminal (nothing leaves), startable (waiting for an attempt), cancellable."""
    return STATES
