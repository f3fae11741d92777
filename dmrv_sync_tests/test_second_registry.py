"""A second registry needs an adapter and nothing else: no schema change, no change to the core.

`ToyRegistry` is a registry defined only here, keeping its objects in memory. It syncs the same demo
data as Isometric, into the same sidecar table, beside Isometric's rows.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dmrv_sync.db.models import ApplicationStatus, ProductionRun, ProductionRunStatus
from dmrv_sync.identity import IdentityService
from dmrv_sync.registries.errors import OutcomeUnknown
from dmrv_sync.sync.adapter import (
    Capability,
    EntitySpec,
    Issue,
    ParentRef,
    RegistryAdapter,
    Severity,
    StepContext,
    StepOutcome,
    StepSpec,
)
from dmrv_sync.sync.engine import SyncEngine
from dmrv_sync_tests.fixtures.sync import SyncWorld


class ToyRegistry(RegistryAdapter):
    """Creates everything (no links, no lookups), one object per entity, keyed by our reference."""

    name = "toy"
    entities = {
        "facility": EntitySpec("facility", "site", (StepSpec("site", Capability.CREATE),)),
        "production_run": EntitySpec(
            "production_run", "batch", (StepSpec("batch", Capability.CREATE),), parent_types=("facility",)
        ),
        "application": EntitySpec(
            "application",
            "deployment",
            (StepSpec("deployment", Capability.CREATE),),
            parent_types=("production_run",),
        ),
    }

    def __init__(self, lose_every: int = 0) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.creates = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.lose_every = lose_every

    def is_ready(self, entity_type: str, entity: Any) -> bool:
        if entity_type == "production_run":
            return bool(entity.status == ProductionRunStatus.COMPLETE)
        if entity_type == "application":
            return bool(entity.status == ApplicationStatus.APPLIED)
        return True

    def parents(self, entity_type: str, entity: Any) -> list[ParentRef]:
        if entity_type == "production_run":
            return [ParentRef("facility", str(entity.facility_id))]
        if entity_type == "application":
            return [ParentRef("production_run", str(entity.production_run_id))]
        return []

    def validate(self, entity_type: str, entity: Any, today: datetime) -> list[Issue]:
        if entity_type == "production_run" and not (entity.biochar_dry_mass_kg or 0) > 0:
            return [
                Issue(
                    Severity.ERROR,
                    entity_type,
                    str(entity.id),
                    "biochar_dry_mass_kg",
                    entity.biochar_dry_mass_kg,
                    "must be > 0",
                )
            ]
        return []

    def build_payload(self, ctx: StepContext) -> dict[str, Any] | None:
        payload: dict[str, Any] = {"reference": ctx.reference}
        if ctx.entity_type == "production_run":
            payload["site"] = ctx.external_ids.get("facility", str(ctx.entity.facility_id), "site")
            payload["kg"] = ctx.entity.biochar_dry_mass_kg
        if ctx.entity_type == "application":
            payload["batch"] = ctx.external_ids.get(
                "production_run", str(ctx.entity.production_run_id), "batch"
            )
        return payload

    def execute(self, ctx: StepContext, payload: dict[str, Any] | None) -> StepOutcome:
        assert payload is not None
        with self._lock:
            external_id = f"toy-{next(self._ids)}"
            self.objects[external_id] = payload
            self.creates += 1
            lost = self.lose_every and self.creates % self.lose_every == 0
        if lost:
            raise OutcomeUnknown("toy: connection dropped after the create", registry=self.name)
        return StepOutcome(external_id)

    def reconcile(
        self, ctx: StepContext, payload: dict[str, Any] | None, unsettled_since: datetime
    ) -> StepOutcome | None:
        with self._lock:
            for external_id, stored in self.objects.items():
                if stored["reference"] == ctx.reference:
                    return StepOutcome(external_id)
        return None


def test_a_toy_registry_syncs_the_same_data_beside_isometric(world: SyncWorld) -> None:
    world.seed(scale=40)
    world.link()
    with world.engine() as engine:
        engine.sync_all("pending")

    toy = ToyRegistry(lose_every=5)
    engine = SyncEngine(toy, world.sessions, concurrency=4)
    first = engine.sync_all("pending")
    assert any(r.status == "unknown" for r in first.results)
    engine.sync_all("failed")
    engine.sync_all("failed")

    references = [o["reference"] for o in toy.objects.values()]
    assert len(references) == len(set(references)), "the core's reconciliation works for any adapter"
    stats = IdentityService(world.sessions).get_registry_sync_stats()
    assert set(stats) == {"isometric", "toy"}
    assert stats["toy"]["site"] == {
        "synced": len(
            {str(r.entity_id) for r in world.identities(registry_name="toy", external_entity_type="site")}
        )
    }
    with world.sessions() as session:
        runs = session.scalars(
            select(ProductionRun).where(ProductionRun.status == ProductionRunStatus.COMPLETE)
        ).all()
        expected_batches = sum(1 for r in runs if (r.biochar_dry_mass_kg or 0) > 0)
    assert stats["toy"]["batch"] == {"synced": expected_batches, "error": len(runs) - expected_batches}
    assert not [i for i in world.identities(registry_name="toy") if i.sync_status in ("unknown", "syncing")]
    # Every toy batch names the toy site of its facility: parents first, through the same core.
    sites = {i.external_id for i in world.identities(registry_name="toy", external_entity_type="site")}
    assert all(o["site"] in sites for o in toy.objects.values() if "site" in o)
