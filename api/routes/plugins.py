"""``/plugins``: the plugin load report of this API process."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Authorized, State
from api.schemas import LoadedPluginPublic, PluginFailurePublic, PluginReport

router = APIRouter(tags=["plugins"], dependencies=[Authorized])


@router.get(
    "/plugins",
    response_model=PluginReport,
    responses={401: {"description": "missing or wrong API key"}},
)
def plugin_report(state: State) -> PluginReport:
    """Plugins loaded (with the job types each registered), quarantined, and left out."""
    report = state.plugins.report
    return PluginReport(
        ok=report.ok,
        loaded=[
            LoadedPluginPublic(
                name=info.name,
                distribution=info.distribution,
                version=info.version,
                value=info.value,
                job_types=list(info.job_types),
            )
            for info in report.loaded
        ],
        failed=[
            PluginFailurePublic(
                plugin=failure.plugin,
                distribution=failure.distribution,
                version=failure.version,
                stage=failure.stage,
                error=failure.error,
            )
            for failure in report.failed
        ],
        skipped=list(report.skipped),
    )
