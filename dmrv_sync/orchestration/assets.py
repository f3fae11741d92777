"""Entity assets, generated from each registry adapter's entity specs (no hand-written asset per registry).

`<registry>/<asset_name>` is partitioned by the local entity's UUID. One run covers a range of partitions
and syncs them concurrently through the sync core. Each entity that ends in the registry is recorded as
its own materialization (with its external IDs, link, warnings, steps); the others make the step fail
at the end, naming each entity and its remedy, so exactly those partitions show as failed and
"backfill failed partitions" re-runs exactly them.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from dmrv_sync.orchestration.partitions import ENTITY_PARTITIONS
from dmrv_sync.registries.catalog import REGISTRY_ENTITIES
from dmrv_sync.sync.adapter import EntitySpec, Severity
from dmrv_sync.sync.engine import EntityResult

DATABASE_RESOURCE = "dmrv_database"
# Statuses that leave the partition as it was: the entity is not ours to judge in this run.
NOT_JUDGED = ("busy", "not_ready")


def registry_resource_key(registry: str) -> str:
    return f"{registry}_registry"


def asset_key(registry: str, spec: EntitySpec) -> dg.AssetKey:
    return dg.AssetKey([registry, spec.asset_name])


def pool_name(registry: str) -> str:
    return f"{registry}_api"


def build_entity_asset(
    registry: str, spec: EntitySpec, entities: dict[str, EntitySpec]
) -> dg.AssetsDefinition:
    key = asset_key(registry, spec)
    partitions = ENTITY_PARTITIONS[spec.entity_type]
    deps = [
        dg.AssetDep(asset_key(registry, entities[parent]), partition_mapping=dg.AllPartitionMapping())
        for parent in spec.parent_types
    ]
    checks = [
        dg.AssetCheckSpec(
            "validation_errors", asset=key, description="No entity in the run was blocked by validation."
        ),
        dg.AssetCheckSpec(
            "validation_warnings", asset=key, description="No entity in the run had validation warnings."
        ),
    ]

    @dg.multi_asset(
        name=f"{registry}__{spec.asset_name}",
        specs=[
            dg.AssetSpec(
                key,
                deps=deps,
                partitions_def=partitions,
                skippable=True,  # each partition's materialization is logged by hand, per entity
                group_name=registry,
                description=_describe(registry, spec),
                kinds={"python", registry},
            )
        ],
        check_specs=checks,
        partitions_def=partitions,
        required_resource_keys={DATABASE_RESOURCE, registry_resource_key(registry)},
        pool=pool_name(registry),
        # A UI backfill of failed partitions runs them in ranges, not one run per entity.
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=500),
    )
    def entity_asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        keys = list(context.partition_keys)
        database = getattr(context.resources, DATABASE_RESOURCE)
        registry_resource = getattr(context.resources, registry_resource_key(registry))
        context.log.info(f"syncing {len(keys)} {spec.entity_type} entities to {registry}")
        with registry_resource.engine(database, run_id=context.run.run_id) as engine:
            results = engine.sync_entities(spec.entity_type, keys)
            web_url = engine.adapter.web_url
        yield from _events(key, registry, results, web_url)

    return entity_asset


def _events(key: dg.AssetKey, registry: str, results: list[EntityResult], web_url: Any) -> Iterator[Any]:
    failed = [r for r in results if not r.ok and r.status not in NOT_JUDGED]
    skipped = [r for r in results if r.status in NOT_JUDGED]
    for result in results:
        if result.ok and result.status != "not_ready":
            yield dg.AssetMaterialization(
                asset_key=key, partition=result.entity_id, metadata=_metadata(result, web_url)
            )
    blocked = [r for r in failed if any(s.action == "blocked" for s in r.steps)]
    warned = [r for r in results if r.warnings]
    yield dg.AssetCheckResult(
        check_name="validation_errors",
        asset_key=key,
        passed=not blocked,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"blocked": len(blocked), "entities": dg.MetadataValue.md(_bullets(blocked))},
    )
    yield dg.AssetCheckResult(
        check_name="validation_warnings",
        asset_key=key,
        passed=not warned,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "entities with warnings": len(warned),
            "warnings": dg.MetadataValue.md(
                "\n".join(f"- {w}" for r in warned[:200] for w in r.warnings) or "none"
            ),
        },
    )
    if skipped:
        yield dg.AssetObservation(
            asset_key=key,
            metadata={"left for another run": dg.MetadataValue.md(_bullets(skipped))},
        )
    if failed:
        raise dg.Failure(
            description=(
                f"{len(failed)} of {len(results)} entities were not synced to {registry}; their partitions are "
                f"marked failed. Fix what each message says, then backfill the failed partitions.\n\n"
                + _bullets(failed, limit=50)
            ),
            metadata={"failed": len(failed), "synced": len(results) - len(failed) - len(skipped)},
            allow_retries=False,
        )


def _metadata(result: EntityResult, web_url: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"entity_id": result.entity_id, "status": result.status}
    for step in result.steps:
        if step.external_id:
            metadata[f"{step.external_entity_type}_id"] = step.external_id
            url = web_url(step.external_entity_type, step.external_id)
            if url:
                metadata[f"{step.external_entity_type}_url"] = dg.MetadataValue.url(url)
        metadata[f"{step.external_entity_type}_step"] = f"{step.action} ({step.status})" + (
            f", attempt {step.attempts}" if step.attempts else ""
        )
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings))
    if result.message:
        metadata["note"] = result.message
    return metadata


def _bullets(results: list[EntityResult], limit: int = 200) -> str:
    lines = [f"- `{r.entity_id}` [{r.status}]: {r.message}" for r in results[:limit]]
    if len(results) > limit:
        lines.append(f"- ... and {len(results) - limit} more")
    return "\n".join(lines) or "none"


def _describe(registry: str, spec: EntitySpec) -> str:
    steps = " → ".join(f"{s.external_entity_type} ({s.capability.value})" for s in spec.steps)
    return f"Local {spec.entity_type} records in {registry}, one partition per record: {steps}."


def build_registry_assets() -> list[dg.AssetsDefinition]:
    assets = []
    for registry, entities in REGISTRY_ENTITIES.items():
        for spec in entities.values():
            assets.append(build_entity_asset(registry, spec, dict(entities)))
    return assets


def assets_for_entity_type(entity_type: str) -> list[dg.AssetKey]:
    """Every registry's asset for one local entity type (one run can cover them all: same partitions)."""
    return [
        asset_key(registry, entities[entity_type])
        for registry, entities in REGISTRY_ENTITIES.items()
        if entity_type in entities
    ]


__all__ = ["Severity", "build_registry_assets", "assets_for_entity_type"]
