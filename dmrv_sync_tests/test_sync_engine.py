"""The sync core against the emulator: exactly once, parents first, resume at the failed step,
reconcile before any resend, drift, plans, confirmation pulls. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from dmrv_sync.api import UserError, link_facility
from dmrv_sync.db.models import (
    Application,
    CreditBatch,
    CreditBatchStatus,
    Facility,
    FeedstockType,
    ProductionRun,
)
from dmrv_sync.db.sync_state import FieldLineage, RegistryAuditEvent, SyncStatus
from dmrv_sync.sync.adapter import supplier_reference
from dmrv_sync_tests.fixtures.sync import SyncWorld


def _creates(world: SyncWorld) -> int:
    return int(world.stats()["requests"]["creates_succeeded"].get("total", 0))


def test_sync_pending_creates_each_object_once_and_blocks_the_invalid(world: SyncWorld) -> None:
    report = world.seed(scale=60)
    invalid = {r.entity_id for r in report.invalid}
    world.link()
    with world.engine() as engine:
        first = engine.sync_all("pending")
    by_id = {r.entity_id: r for r in first.results}
    for record in report.invalid:
        result = by_id[record.entity_id]
        assert result.status == "error", record
        assert record.entity_id in (result.message or ""), "the message names the entity"
    stats = world.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0
    # Every production batch in the registry is one of ours, once.
    assert stats["objects"]["production_batches"] == sum(
        1 for r in first.results if r.entity_type == "production_run" and r.status == "synced"
    )
    # An invalid record never reached the registry: no object carries its reference.
    invalid_refs = {supplier_reference("production_batch", i) for i in invalid}
    assert not invalid_refs & {ref for ref, _ in _objects(world, "/production_batches")}

    creates_before = _creates(world)
    with world.engine() as engine:
        second = engine.sync_all("pending")
    assert _creates(world) == creates_before, "a second sync pending creates nothing"
    assert second.results == []


def _objects(world: SyncWorld, path: str) -> list[tuple[str, str]]:
    import httpx

    found = []
    params: dict[str, Any] = {"first": 50}
    with httpx.Client(base_url=world.emulator.base_url, headers=world.emulator.auth_headers) as http:
        while True:
            page = http.get(path, params=params).json()
            found += [(n.get("supplier_reference_id"), n["id"]) for n in page["nodes"]]
            if not page["page_info"]["has_next_page"]:
                return found
            params["after"] = page["page_info"]["end_cursor"]


def test_an_unlinked_facility_blocks_its_runs_with_a_message_that_says_what_to_do(world: SyncWorld) -> None:
    world.seed(scale=8)
    with world.sessions() as session:
        facility = session.scalars(select(Facility).order_by(Facility.created_at)).first()
        assert facility is not None
        facility_id = str(facility.id)
    with world.engine() as engine:
        result = engine.sync_entity("facility", facility_id)
        assert result.status == "error"
        assert "Certify API cannot create facilities" in (result.message or "")
        assert f"dmrv-sync link facility {facility_id} fcl_" in (result.message or "")
        with world.sessions() as session:
            run = session.scalars(
                select(ProductionRun).where(ProductionRun.facility_id == facility.id)
            ).first()
            assert run is not None
            run_id = str(run.id)
        child = engine.sync_entity("production_run", run_id)
    assert child.status == "error"
    assert f"its parent facility {facility_id}" in (child.message or "")
    assert world.stats()["requests"]["by_route"].get("POST /production_batches", 0) == 0, "no child request"


def test_a_feedstock_type_missing_in_certify_says_which_reference_to_create(world: SyncWorld) -> None:
    world.seed(scale=4)
    with world.sessions() as session:
        feedstock = session.scalars(select(FeedstockType)).first()
        assert feedstock is not None
    with world.engine() as engine:
        result = engine.sync_entity("feedstock_type", str(feedstock.id))
    assert result.status == "error"
    assert supplier_reference("feedstock_type", str(feedstock.id)) in (result.message or "")
    assert "create it in the Certify web app" in (result.message or "")


def test_link_facility_validates_and_refuses_a_silent_relink(world: SyncWorld) -> None:
    world.seed(scale=4)
    with world.sessions() as session:
        facility_id = str(session.scalars(select(Facility.id)).first())
    assert "linked to isometric facility fcl_1DEMOFACILITY001" in link_facility(
        facility_id, "fcl_1DEMOFACILITY001", settings=world.settings
    )
    assert "nothing to do" in link_facility(facility_id, "fcl_1DEMOFACILITY001", settings=world.settings)
    for bad in ("ptb_1DEMOFACILITY001", "fcl_short", "fcl_1DEMOFACILITY001; drop table"):
        try:
            link_facility(facility_id, bad, settings=world.settings)
        except UserError as exc:
            assert "is not an Isometric facility ID" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    try:
        link_facility(facility_id, "fcl_1DEMOFACILITY002", settings=world.settings)
    except UserError as exc:
        assert "--relink" in str(exc)
    else:
        raise AssertionError("relinked without --relink")
    assert "fcl_1DEMOFACILITY002" in link_facility(
        facility_id, "fcl_1DEMOFACILITY002", relink=True, settings=world.settings
    )


def test_a_rejected_second_step_resumes_without_recreating_the_first(world: SyncWorld) -> None:
    world.seed(scale=8)
    world.link()
    with world.sessions() as session:
        application = session.scalars(select(Application).where(Application.status == "applied")).first()
        assert application is not None
        application_id = str(application.id)
    reference = supplier_reference("biochar_application", application_id)
    world.emulator.admin.set_faults(
        {
            "validation_errors": [
                {
                    "path": "^/biochar_applications$",
                    "supplier_reference_id": f"^{reference}$",
                    "rate": 1.0,
                    "msg": "application rate implausible",
                    "methods": ["POST"],
                }
            ]
        }
    )
    with world.engine() as engine:
        engine.sync_all("pending")
        first = engine.sync_entity("application", application_id)  # already in error: sync_entity retries it
    assert first.status == "error"
    assert "application rate implausible" in (first.message or "")
    assert [s.external_entity_type for s in first.steps][-1] == "biochar_application"
    locations_before = world.stats()["objects"]["storage_locations"]

    world.emulator.admin.set_faults({})  # the user fixed the data
    with world.engine() as engine:
        retried = engine.sync_all("failed")
    result = next(r for r in retried.results if r.entity_id == application_id)
    assert result.status == "synced"
    assert [(s.external_entity_type, s.action) for s in result.steps] == [
        ("storage_location", "unchanged"),
        ("biochar_application", "created"),
    ]
    stats = world.stats()
    assert stats["objects"]["storage_locations"] == locations_before, (
        "the storage location was not re-created"
    )
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0


def test_lost_responses_are_reconciled_not_resent(world: SyncWorld) -> None:
    world.seed(scale=40)
    world.link()
    world.emulator.admin.set_faults(
        {"seed": 7, "lost_response": {"rate": 0.2, "mode": "drop", "methods": ["POST"]}}
    )
    with world.engine() as engine:
        first = engine.sync_all("pending")
        assert any(r.status == "unknown" for r in first.results), "the fault was exercised"
        rounds = 0
        while rounds < 8 and not _settled(world):
            rounds += 1
            engine.sync_all("failed")
    stats = world.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0
    rows = world.identities()
    assert not [r for r in rows if r.sync_status in (SyncStatus.UNKNOWN, SyncStatus.SYNCING)], (
        "nothing left unsettled"
    )
    # What is not synced is blocked by validation (its own or an ancestor's), never by the fault.
    not_synced = [r for r in rows if r.sync_status == SyncStatus.ERROR]
    assert all((r.sync_metadata or {}).get("blocked") for r in not_synced), [
        r.last_sync_error for r in not_synced
    ]
    # Every object the registry holds is known locally as synced, once: nothing orphaned, nothing twice.
    synced_per_type: dict[str, int] = {}
    for r in rows:
        if r.sync_status == SyncStatus.SYNCED:
            synced_per_type[r.external_entity_type] = synced_per_type.get(r.external_entity_type, 0) + 1
    objects = stats["objects"]
    for resource, external_types in [
        ("production_batches", ["production_batch"]),
        ("storage_locations", ["storage_location"]),
        ("biochar_applications", ["biochar_application"]),
        ("datapoints", ["datapoint_applied_biochar_mass", "datapoint_organic_carbon_fraction"]),
        ("ghg_entries", ["ghg_entry"]),
        ("ghg_statements", ["ghg_statement"]),
    ]:
        assert objects[resource] == sum(synced_per_type.get(t, 0) for t in external_types), resource
    assert objects["datapoints"] > 0, "credit batches got as far as their datapoints"
    reconciled = [
        e for e in _audit(world) if e.operation == "synced" and e.details and e.details.get("external_id")
    ]
    assert reconciled
    print(
        f"lost responses 20%: {stats['requests']['total']} requests for "
        f"{stats['requests']['creates_succeeded']['total']} objects = "
        f"{stats['requests']['total'] / stats['requests']['creates_succeeded']['total']:.3f} per object, "
        f"converged after {rounds} sync failed rounds"
    )


def _settled(world: SyncWorld) -> bool:
    """No unknown outcome left, and every error is a validation block (nothing a retry can fix)."""
    return all(
        r.sync_status not in (SyncStatus.UNKNOWN, SyncStatus.SYNCING)
        and (r.sync_status != SyncStatus.ERROR or (r.sync_metadata or {}).get("blocked"))
        for r in world.identities()
    )


def _audit(world: SyncWorld) -> list[RegistryAuditEvent]:
    with world.sessions() as session:
        return list(session.scalars(select(RegistryAuditEvent)))


def test_drift_pushes_what_the_api_can_update_and_flags_the_rest(world: SyncWorld) -> None:
    world.seed(scale=8)
    world.link()
    with world.engine() as engine:
        engine.sync_all("pending")
    with world.sessions.begin() as session:
        application = session.scalars(select(Application).where(Application.status == "applied")).first()
        assert application is not None
        application.site_name = "Renamed field"
        run = session.get(ProductionRun, application.production_run_id)
        assert run is not None
        run.biochar_dry_mass_kg = (run.biochar_dry_mass_kg or 0) + 100
        application_id, run_id = str(application.id), str(run.id)
    creates = _creates(world)
    with world.engine() as engine:
        report = engine.sync_all("pending")
        plan = engine.plan("production_run", run_id)
    by_id = {r.entity_id: r for r in report.results}
    assert by_id[application_id].steps[0].action == "updated"
    assert by_id[run_id].status == "drifted"
    assert "does not allow updating a production_batch" in (by_id[run_id].message or "")
    assert _creates(world) == creates, "drift never creates a second object"
    location = next(
        n
        for n in _objects_full(world, "/projects/{p}/storage_locations")
        if n["supplier_reference_id"] == supplier_reference("storage_location", application_id)
    )
    assert location["name"] == "Renamed field"
    assert (
        plan["steps"][0]["differences"]["mass"]["registry"]["magnitude"]
        != plan["steps"][0]["payload"]["mass"]["magnitude"]
    )


def _objects_full(world: SyncWorld, path: str) -> list[dict[str, Any]]:
    import httpx

    path = path.replace("{p}", world.settings.isometric_project_id)
    with httpx.Client(base_url=world.emulator.base_url, headers=world.emulator.auth_headers) as http:
        nodes: list[dict[str, Any]] = []
        params: dict[str, Any] = {"first": 50}
        while True:
            page = http.get(path, params=params).json()
            nodes += page["nodes"]
            if not page["page_info"]["has_next_page"]:
                return nodes
            params["after"] = page["page_info"]["end_cursor"]


def test_plan_shows_the_payloads_without_sending(world: SyncWorld) -> None:
    world.seed(scale=4)
    world.link()
    with world.sessions() as session:
        application_id = str(
            session.scalars(select(Application.id).where(Application.status == "applied")).first()
        )
    requests_before = world.stats()["requests"]["total"]
    with world.engine() as engine:
        plan = engine.plan("application", application_id)
    assert world.stats()["requests"]["total"] == requests_before
    location, biochar = plan["steps"]
    assert location["payload"]["supplier_reference_id"] == supplier_reference(
        "storage_location", application_id
    )
    assert biochar["payload"] is None and "not in Isometric yet" in biochar["waiting_for"]


def test_confirm_pulls_verdicts_with_lineage_and_is_idempotent(world: SyncWorld) -> None:
    world.seed(scale=80, with_invalid=False)
    world.link()
    with world.engine() as engine:
        engine.sync_all("pending")
    submitted = world.identities(
        external_entity_type="ghg_statement_submission", sync_status=SyncStatus.SYNCED
    )
    assert len(submitted) >= 2
    verified, issued = submitted[0], submitted[1]
    world.emulator.admin.set_statement_status(verified.external_id, "VERIFIED", verifier="Verifier A")
    world.emulator.admin.set_statement_status(issued.external_id, "VERIFIED", verifier="Verifier B")
    world.emulator.admin.set_statement_status(issued.external_id, "CREDITS_ISSUED")
    failed = submitted[2] if len(submitted) > 2 else None
    if failed is not None:
        world.emulator.admin.set_statement_status(
            failed.external_id, "FAILED_VERIFICATION", verifier="Verifier C"
        )

    with world.engine() as engine:
        first = engine.confirm()
        second = engine.confirm()
    assert any(r.changed for r in first)
    assert not any(r.changed for r in second), "a second confirm changes nothing"
    with world.sessions() as session:
        batch_v = session.get(CreditBatch, uuid.UUID(verified.entity_id))
        batch_i = session.get(CreditBatch, uuid.UUID(issued.entity_id))
        assert batch_v is not None and batch_i is not None
        assert batch_v.status == CreditBatchStatus.VERIFIED and batch_v.verifier == "Verifier A"
        assert batch_i.status == CreditBatchStatus.ISSUED and batch_i.credits_issued_at is not None
        lineage = session.scalars(
            select(FieldLineage).where(FieldLineage.entity_id == issued.entity_id)
        ).all()
        fields = {(row.field, row.new_value) for row in lineage}
        assert ("status", "issued") in fields and ("verifier", "Verifier B") in fields
        assert all(row.source == f"isometric:ghg_statement:{issued.external_id}" for row in lineage)
    if failed is not None:
        row = world.identities(entity_id=failed.entity_id, external_entity_type="ghg_statement_submission")[0]
        assert row.sync_status == SyncStatus.ERROR and "failed verification" in (row.last_sync_error or "")
        with world.engine() as engine:
            retried = engine.sync_all("failed")
        resubmitted = next(r for r in retried.results if r.entity_id == failed.entity_id)
        assert resubmitted.status == "synced"
        statement = next(s for s in _objects_full(world, "/ghg_statements") if s["id"] == failed.external_id)
        assert statement["status"] == "AWAITING_VERIFICATION", "resubmitted for verification"


def _entity_snapshot(world: SyncWorld) -> dict[str, list[tuple[Any, ...]]]:
    from dmrv_sync.db.models import ENTITY_MODELS

    snapshot = {}
    with world.sessions() as session:
        for name, model in ENTITY_MODELS.items():
            table = model.__table__  # type: ignore[attr-defined]
            snapshot[name] = sorted(tuple(row) for row in session.execute(select(table)))
    return snapshot


def test_the_push_path_never_writes_entity_tables(world: SyncWorld) -> None:
    world.seed(scale=30)
    world.link()
    before = _entity_snapshot(world)
    with world.engine() as engine:
        engine.sync_all("pending")
        engine.sync_all("failed")
    assert _entity_snapshot(world) == before


def test_pulls_write_only_the_fields_the_registry_owns(world: SyncWorld) -> None:
    import pytest

    from dmrv_sync.sync.lineage import apply_registry_values

    world.seed(scale=4, with_invalid=False)
    with world.sessions.begin() as session:
        batch = session.scalars(select(CreditBatch)).first()
        assert batch is not None
        with pytest.raises(PermissionError, match="the supplier owns it"):
            apply_registry_values(
                session,
                "credit_batch",
                batch,
                {"estimated_tco2e": 1},
                allowed_fields=frozenset({"status"}),
                source="isometric:ghg_statement:ggs_X",
                run_id=None,
            )
