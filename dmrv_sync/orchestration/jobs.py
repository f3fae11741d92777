"""Jobs a schedule runs hourly and a user can launch by hand: confirmation pulls and the retry of
failed entities (with backoff by attempt count)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from dmrv_sync.orchestration.assets import DATABASE_RESOURCE, asset_key, registry_resource_key
from dmrv_sync.registries.catalog import REGISTRY_ENTITIES

RETRY_BASE_SECONDS = 300.0
RETRY_CAP_SECONDS = 86_400.0


def _confirm_op(registry: str) -> dg.OpDefinition:
    entities = REGISTRY_ENTITIES[registry]

    @dg.op(
        name=f"confirm_{registry}",
        required_resource_keys={DATABASE_RESOURCE, registry_resource_key(registry)},
        pool=f"{registry}_api",
        description=f"Read {registry}'s verdicts and hold the registry-owned fields locally (with lineage).",
    )
    def confirm(context: dg.OpExecutionContext) -> Iterator[Any]:
        database = getattr(context.resources, DATABASE_RESOURCE)
        with getattr(context.resources, registry_resource_key(registry)).engine(
            database, run_id=context.run.run_id
        ) as engine:
            results = engine.confirm()
            target = engine.adapter.confirmable()
        changed = [r for r in results if r.changed]
        for result in changed:
            if target is None:
                break
            yield dg.AssetObservation(
                asset_key=asset_key(registry, entities[target[0]]),
                partition=result.entity_id,
                metadata={
                    field: f"{_plain(old)} → {_plain(new)}" for field, (old, new) in result.changed.items()
                },
            )
        for result in results:
            if result.error:
                context.log.warning(result.error)
        context.log.info(f"{len(results)} read, {len(changed)} changed")
        yield dg.Output(None, metadata={"read": len(results), "changed": len(changed)})

    return confirm


def _retry_op(registry: str) -> dg.OpDefinition:
    entities = REGISTRY_ENTITIES[registry]

    @dg.op(
        name=f"retry_failed_{registry}",
        required_resource_keys={DATABASE_RESOURCE, registry_resource_key(registry)},
        pool=f"{registry}_api",
        description="Retry failed entities whose backoff has passed (5 min × 2^(attempts-1), at most a day).",
    )
    def retry(context: dg.OpExecutionContext) -> Iterator[Any]:
        database = getattr(context.resources, DATABASE_RESOURCE)
        synced = failed = 0
        with getattr(context.resources, registry_resource_key(registry)).engine(
            database, run_id=context.run.run_id
        ) as engine:
            for entity_type in engine.entity_order():
                due = engine.due_for_retry(
                    entity_type, base_seconds=RETRY_BASE_SECONDS, cap_seconds=RETRY_CAP_SECONDS
                )
                if not due:
                    continue
                for result in engine.sync_entities(entity_type, due):
                    if result.ok and result.status != "not_ready":
                        synced += 1
                        # The partition turns green; the asset's own runs keep per-entity metadata.
                        yield dg.AssetMaterialization(
                            asset_key=asset_key(registry, entities[entity_type]),
                            partition=result.entity_id,
                            metadata={"retried_by": context.run.run_id, "status": result.status},
                        )
                    elif result.status not in ("busy", "not_ready"):
                        failed += 1
                        context.log.warning(
                            result.message or f"{entity_type} {result.entity_id}: {result.status}"
                        )
        yield dg.Output(None, metadata={"synced": synced, "still failing": failed})

    return retry


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))


def build_jobs() -> tuple[list[dg.JobDefinition], list[dg.ScheduleDefinition]]:
    jobs: list[dg.JobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    for registry in REGISTRY_ENTITIES:
        confirm_job = dg.JobDefinition(
            name=f"{registry}_confirm",
            graph_def=dg.GraphDefinition(name=f"{registry}_confirm", node_defs=[_confirm_op(registry)]),
            description=f"Pull {registry}'s statement verdicts into the local credit batches.",
        )
        retry_job = dg.JobDefinition(
            name=f"{registry}_retry_failed",
            graph_def=dg.GraphDefinition(name=f"{registry}_retry_failed", node_defs=[_retry_op(registry)]),
            description=f"Retry entities that failed to sync to {registry}, with backoff by attempt count.",
        )
        jobs += [confirm_job, retry_job]
        schedules += [
            dg.ScheduleDefinition(
                job=confirm_job, cron_schedule="0 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
            ),
            dg.ScheduleDefinition(
                job=retry_job, cron_schedule="30 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
            ),
        ]
    return jobs, schedules
