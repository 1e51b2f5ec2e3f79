"""``/plugins``: the plugin load report of this API process."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Authorized, State
from api.schemas import PluginReport

router = APIRouter(tags=["plugins"], dependencies=[Authorized])


@router.get(
    "/plugins",
    response_model=PluginReport,
    responses={401: {"description": "missing or wrong API key"}},
)
def plugin_report(state: State) -> PluginReport:
    """Plugins loaded (with the job types each registered), quarantined, and left out."""
    return PluginReport.model_validate(state.plugins.report, from_attributes=True)
