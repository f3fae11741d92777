"""The status report asset: objects per registry × external type × sync status, as a table and a chart."""

from typing import TYPE_CHECKING

import dagster as dg
from sqlalchemy import func, select

from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import RegistryIdentity
from dmrv_sync.orchestration.assets import DATABASE_RESOURCE

if TYPE_CHECKING:
    import pandas as pd  # imported where used: every run process loads this module, few need pandas

BAR_WIDTH = 40


def sync_status_frame(database_url: str) -> "pd.DataFrame":
    import pandas as pd

    query = select(
        RegistryIdentity.registry_name.label("registry"),
        RegistryIdentity.external_entity_type.label("external_type"),
        RegistryIdentity.sync_status.label("status"),
        func.count().label("count"),
    ).group_by(
        RegistryIdentity.registry_name, RegistryIdentity.external_entity_type, RegistryIdentity.sync_status
    )
    with get_session_factory(database_url)() as session:
        rows = [
            (r.registry, r.external_type, getattr(r.status, "value", r.status), r.count)
            for r in session.execute(query)
        ]
    frame = pd.DataFrame(rows, columns=["registry", "external_type", "status", "count"])
    if frame.empty:
        return frame
    return frame.pivot_table(
        index=["registry", "external_type"], columns="status", values="count", aggfunc="sum", fill_value=0
    ).reset_index()


def bar_chart(frame: "pd.DataFrame") -> str:
    """A text bar chart per (registry, type): █ synced, ░ everything else. Renders in any markdown."""
    if frame.empty:
        return "nothing synced yet"
    statuses = [c for c in frame.columns if c not in ("registry", "external_type")]
    totals = frame[statuses].sum(axis=1)
    widest = max(int(totals.max()), 1)
    lines = ["```"]
    for (_, row), total in zip(frame.iterrows(), totals, strict=True):
        synced = int(row.get("synced", 0))
        width = round(BAR_WIDTH * total / widest)
        filled = round(width * synced / total) if total else 0
        label = f"{row['registry']}/{row['external_type']}"
        lines.append(f"{label:<38} {'█' * filled}{'░' * (width - filled)} {synced}/{int(total)} synced")
    lines.append("```")
    return "\n".join(lines)


@dg.asset(
    key=dg.AssetKey(["dmrv", "sync_status_report"]),
    required_resource_keys={DATABASE_RESOURCE},
    group_name="reports",
    description="Registry objects per registry × external type × sync status.",
    kinds={"pandas"},
)
def sync_status_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    frame = sync_status_frame(getattr(context.resources, DATABASE_RESOURCE).database_url())
    return dg.MaterializeResult(
        metadata={
            "table": dg.MetadataValue.md(
                frame.to_markdown(index=False) if not frame.empty else "no registry objects yet"
            ),
            "chart": dg.MetadataValue.md(bar_chart(frame)),
            "objects": int(frame.drop(columns=["registry", "external_type"]).to_numpy().sum())
            if not frame.empty
            else 0,
        }
    )


status_report_job = dg.define_asset_job("sync_status_report_job", selection=[sync_status_report])
status_report_schedule = dg.ScheduleDefinition(
    job=status_report_job, cron_schedule="*/15 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
)
