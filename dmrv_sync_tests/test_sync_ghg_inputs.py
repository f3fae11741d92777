"""A credit batch's GHG entry carries its monitored inputs: two datapoints made from the batch's applied
applications (applied biochar mass, mass-weighted organic carbon fraction), referenced by the entry's
template components. Each test runs on SQLite and PostgreSQL, against the emulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from dmrv_sync.db.models import ApplicationStatus, CreditBatch, ProductionRun
from dmrv_sync.db.sync_state import RegistryAuditEvent, SyncStatus
from dmrv_sync.registries.isometric.adapter import ENTITIES, IsometricAdapter
from dmrv_sync.settings import Settings
from dmrv_sync.sync.adapter import supplier_reference
from dmrv_sync_tests.fixtures.sync import SyncWorld

DATAPOINT_STEPS = ("datapoint_applied_biochar_mass", "datapoint_organic_carbon_fraction")


def _stored(world: SyncWorld, resource: str) -> list[dict[str, Any]]:
    """The emulator's own records (what the registry keeps, beyond what its answers show)."""
    assert world.emulator.server is not None
    return world.emulator.server.api.store.list(resource)


def _expected(world: SyncWorld, batch_id: str) -> tuple[float, float]:
    """(applied biochar mass in t, mass-weighted organic carbon fraction) from the DMRV database."""
    with world.sessions() as session:
        batch = session.get(CreditBatch, uuid.UUID(batch_id))
        assert batch is not None
        applied = [a for a in batch.applications if a.status == ApplicationStatus.APPLIED]
        mass = sum(a.applied_mass_kg or 0 for a in applied)
        carbon = sum(
            (a.applied_mass_kg or 0) * (a.production_run.organic_carbon_fraction or 0) for a in applied
        )
        return mass / 1000, carbon / mass


def _posts(world: SyncWorld, template: str) -> int:
    return int(world.stats()["requests"]["by_route"].get(f"POST {template}", 0))


def test_credit_batch_steps_are_declared_in_order() -> None:
    assert ENTITIES["credit_batch"].external_types == (
        *DATAPOINT_STEPS,
        "ghg_entry",
        "ghg_statement",
        "ghg_statement_submission",
    )


def test_datapoints_are_created_once_and_the_ghg_entry_references_them(world: SyncWorld) -> None:
    world.seed(scale=40, with_invalid=False)
    world.link()
    with world.engine() as engine:
        engine.sync_all("pending")
    batches = world.identities(external_entity_type="ghg_statement_submission", sync_status=SyncStatus.SYNCED)
    assert len(batches) >= 2
    datapoints = {d["supplier_reference_id"]: d for d in _stored(world, "datapoints")}
    entries = {e["supplier_reference_id"]: e for e in _stored(world, "ghg_entries")}
    assert len(datapoints) == 2 * len(entries) == 2 * len(batches)
    for row in batches:
        mass_t, fraction = _expected(world, row.entity_id)
        mass = datapoints[supplier_reference("datapoint_applied_biochar_mass", row.entity_id)]
        carbon = datapoints[supplier_reference("datapoint_organic_carbon_fraction", row.entity_id)]
        assert mass["quantity"]["unit"] == "t" and mass["quantity"]["magnitude"] == pytest.approx(
            mass_t, abs=1e-6
        )
        assert carbon["quantity"]["unit"] == "dimensionless"
        assert carbon["quantity"]["magnitude"] == pytest.approx(fraction, abs=1e-6)
        assert 0 < fraction < 1 and mass["type"] == "REPORTED" and carbon["type"] == "DERIVED"
        entry = entries[supplier_reference("ghg_entry", row.entity_id)]
        assert entry["ghg_entry_template_id"] == world.settings.isometric_ghg_entry_template_id
        assert [
            (c["ghg_entry_template_component_id"], [(i["input_key"], i["datapoint_id"]) for i in c["inputs"]])
            for c in entry["ghg_entry_template_components"]
        ] == [
            ("rtc_1DEMOCOMPONENT01", [("biochar_mass_applied", mass["id"])]),
            ("rtc_1DEMOCOMPONENT02", [("organic_carbon_fraction", carbon["id"])]),
        ]
        # The registry's figure follows from them: mass x fraction x 44/12, less the 5 % discount.
        assert entry["co2e_net_removed_without_discount_kg"] == pytest.approx(
            mass_t * 1000 * fraction * 44 / 12, rel=1e-5
        )
        local = {r.external_entity_type: r.external_id for r in world.identities(entity_id=row.entity_id)}
        assert (local["datapoint_applied_biochar_mass"], local["datapoint_organic_carbon_fraction"]) == (
            mass["id"],
            carbon["id"],
        )
    assert _posts(world, "/datapoints") == len(datapoints), "one request per datapoint"

    with world.engine() as engine:
        engine.sync_all("pending")
        engine.sync_all("failed")
    assert _posts(world, "/datapoints") == len(datapoints), "nothing is sent twice"
    assert world.stats()["duplicate_supplier_reference_ids"]["total"] == 0


def test_a_lost_datapoint_answer_is_reconciled_by_reference_not_resent(world: SyncWorld) -> None:
    world.seed(scale=20, with_invalid=False)
    world.link()
    # Every datapoint is stored, but its answer never arrives.
    world.emulator.admin.set_faults({"lost_response": {"rate": 1.0, "mode": "drop", "path": "^/datapoints$"}})
    with world.engine() as engine:
        first = engine.sync_all("pending")
    lost = [r for r in first.results if r.entity_type == "credit_batch" and r.status == "unknown"]
    assert lost, "the fault was exercised"
    assert all(r.steps[-1].external_entity_type == "datapoint_applied_biochar_mass" for r in lost)
    assert _posts(world, "/datapoints") == len(lost)

    world.emulator.admin.set_faults({})
    with world.engine() as engine:
        retried = engine.sync_all("failed")
    by_id = {r.entity_id: r for r in retried.results}
    for result in lost:
        steps = {s.external_entity_type: s.action for s in by_id[result.entity_id].steps}
        assert steps["datapoint_applied_biochar_mass"] == "reconciled"
        assert steps["datapoint_organic_carbon_fraction"] == "created"
        assert by_id[result.entity_id].status == "synced"
    stats = world.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0
    assert stats["objects"]["datapoints"] == 2 * len(lost) == _posts(world, "/datapoints")
    # One filtered lookup per lost answer, nothing paged.
    assert stats["requests"]["by_route"]["GET /datapoints"] == len(lost)


def test_a_lost_ghg_entry_answer_holds_later_periods_back(world: SyncWorld) -> None:
    """An entry whose answer was lost exists without a local ID: a later period's statement must not
    swallow it (the earlier batch's datapoints show that its entry may exist)."""
    world.seed(scale=60, with_invalid=False)
    world.link()
    with world.engine() as engine:
        for entity_type in engine.entity_order():
            if entity_type != "credit_batch":
                engine.sync_entities(entity_type, engine.select(entity_type, "pending"))
        pending = engine.select("credit_batch", "pending")
    with world.sessions() as session:
        earlier, later = (
            str(batch_id)
            for batch_id in session.scalars(
                select(CreditBatch.id)
                .where(CreditBatch.id.in_([uuid.UUID(i) for i in pending]))
                .order_by(CreditBatch.reporting_period_end, CreditBatch.id)
                .limit(2)
            )
        )

    world.emulator.admin.set_faults(
        {"lost_response": {"rate": 1.0, "mode": "drop", "path": "^/ghg_entries$"}}
    )
    with world.engine() as engine:
        assert engine.sync_entity("credit_batch", earlier).status == "unknown"
    world.emulator.admin.set_faults({})
    with world.engine() as engine:
        held = engine.sync_entity("credit_batch", later)
    assert held.status == "error" and f"waits for the GHG statement of credit batch {earlier}" in (
        held.message or ""
    )
    assert [s.external_entity_type for s in held.steps][-1] == "ghg_statement"
    assert world.stats()["objects"]["ghg_statements"] == 0, "no statement took an entry it cannot see"

    with world.engine() as engine:
        for _ in range(4):
            if not engine.sync_all("failed").results:
                break
    statements = _stored(world, "ghg_statements")
    assert len(statements) == 2 and all(len(s["ghg_entry_ids"]) == 1 for s in statements)
    for batch_id in (earlier, later):
        (submission,) = world.identities(entity_id=batch_id, external_entity_type="ghg_statement_submission")
        assert submission.sync_status == SyncStatus.SYNCED


def _parents_synced(world: SyncWorld) -> list[str]:
    """Sync everything but the credit batches; returns the pending credit batches, earliest period first."""
    with world.engine() as engine:
        for entity_type in engine.entity_order():
            if entity_type != "credit_batch":
                engine.sync_entities(entity_type, engine.select(entity_type, "pending"))
        pending = set(engine.select("credit_batch", "pending"))
    with world.sessions() as session:
        ordered = session.scalars(
            select(CreditBatch.id).order_by(CreditBatch.reporting_period_end, CreditBatch.id)
        )
        return [str(i) for i in ordered if str(i) in pending]


def _statements_by_batch(world: SyncWorld) -> list[tuple[str, list[str]]]:
    """(end of period, batches whose entries it took) of every statement, in the order they were created."""
    batch_of_entry = {e["id"]: e["supplier_reference_id"] for e in _stored(world, "ghg_entries")}
    return [
        (s["reporting_period_end_at"], [batch_of_entry[i] for i in s["ghg_entry_ids"]])
        for s in _stored(world, "ghg_statements")
    ]


def test_later_periods_go_ahead_while_statements_follow_period_order(world: SyncWorld) -> None:
    """Only the statement waits for the period before: the datapoints and entries of later periods are
    made meanwhile, and every statement still takes its own entry alone, earliest period first."""
    world.seed(scale=150, with_invalid=False)
    world.link()
    batches = _parents_synced(world)
    assert len(batches) >= 5
    # A slow statement answer leaves the other workers time to go ahead.
    world.emulator.admin.set_faults(
        {"latency": {"fixed_ms": 150, "methods": ["POST"], "path": "^/ghg_statements$"}}
    )
    with world.engine(concurrency=4) as engine:
        results = engine.sync_entities("credit_batch", list(reversed(batches)))
    assert [r.entity_id for r in results] == batches, "results in period order"
    assert all(r.status == "synced" for r in results), [r.message for r in results if r.status != "synced"]
    assert all(r.steps[-1].action == "submitted" for r in results)
    statements = _statements_by_batch(world)
    assert [batch for _, batch in statements] == [[supplier_reference("ghg_entry", b)] for b in batches]
    assert [end for end, _ in statements] == sorted(end for end, _ in statements)
    with world.sessions() as session:
        made = session.scalars(
            select(RegistryAuditEvent.external_entity_type)
            .where(RegistryAuditEvent.entity_type == "credit_batch", RegistryAuditEvent.http_method == "POST")
            .order_by(RegistryAuditEvent.id)
        ).all()
    assert made.index("ghg_statement") >= 2 * 3, f"later periods' datapoints and entries went ahead: {made}"


def test_a_second_batch_ending_the_same_day_is_held_before_it_goes_ahead(world: SyncWorld) -> None:
    """Either statement of two periods with one end date would take both entries: the second batch is
    blocked by validation before any request, so it never goes ahead of the first."""
    world.seed(scale=150, with_invalid=False)
    world.link()
    batches = _parents_synced(world)
    with world.sessions.begin() as session:
        first, second = (session.get(CreditBatch, uuid.UUID(i)) for i in batches[:2])
        assert first is not None and second is not None
        second.reporting_period_end = first.reporting_period_end
        created_first = first.created_at < second.created_at or (
            first.created_at == second.created_at and first.id < second.id
        )
        held = batches[1] if created_first else batches[0]
    with world.engine() as engine:
        results = {r.entity_id: r for r in engine.sync_entities("credit_batch", batches)}
    assert results[held].status == "error" and "already ends on that day" in (results[held].message or "")
    assert [(s.external_entity_type, s.action) for s in results[held].steps] == [
        ("datapoint_applied_biochar_mass", "blocked")
    ]
    assert supplier_reference("datapoint_applied_biochar_mass", held) not in {
        d["supplier_reference_id"] for d in _stored(world, "datapoints")
    }, "no request for the held batch"
    synced = [b for b in batches if b != held]
    assert all(results[b].status == "synced" for b in synced), [results[b].message for b in synced]
    assert sorted(batch for _, batch in _statements_by_batch(world)) == sorted(
        [supplier_reference("ghg_entry", b)] for b in synced
    ), "every statement took its own entry alone"


def test_a_lost_entry_answer_in_a_pipelined_run_holds_every_later_statement(world: SyncWorld) -> None:
    world.seed(scale=150, with_invalid=False)
    world.link()
    batches = _parents_synced(world)
    world.emulator.admin.set_faults(
        {"lost_response": {"rate": 1.0, "mode": "drop", "path": "^/ghg_entries$"}}
    )
    with world.engine() as engine:
        first = engine.sync_entity("credit_batch", batches[0])
    assert first.status == "unknown"
    world.emulator.admin.set_faults({})
    with world.engine() as engine:
        later = engine.sync_entities("credit_batch", batches[1:])
    assert all(r.status == "error" for r in later)
    assert all(
        f"waits for the GHG statement of credit batch {batches[0]}" in (r.message or "") for r in later
    )
    assert world.stats()["objects"]["ghg_statements"] == 0, "no statement took an entry it cannot see"
    assert world.stats()["objects"]["ghg_entries"] == len(batches), "the later entries went ahead"

    with world.engine() as engine:
        retried = engine.sync_entities("credit_batch", engine.select("credit_batch", "failed"))
    assert sorted(r.entity_id for r in retried) == sorted(batches)
    assert all(r.status == "synced" for r in retried), [r.message for r in retried if r.status != "synced"]
    assert [batch for _, batch in _statements_by_batch(world)] == [
        [supplier_reference("ghg_entry", b)] for b in batches
    ]
    assert world.stats()["duplicate_supplier_reference_ids"]["total"] == 0


def test_corrected_records_update_the_datapoints_before_a_resubmission(world: SyncWorld) -> None:
    world.seed(scale=20, with_invalid=False)
    world.link()
    with world.engine() as engine:
        engine.sync_all("pending")
    row = world.identities(external_entity_type="ghg_statement_submission", sync_status=SyncStatus.SYNCED)[0]
    assert row.external_id is not None
    world.emulator.admin.set_statement_status(row.external_id, "FAILED_VERIFICATION", verifier="Verifier C")
    with world.engine() as engine:
        engine.confirm()
    with world.sessions.begin() as session:  # the supplier corrects a lab value
        batch = session.get(CreditBatch, uuid.UUID(row.entity_id))
        assert batch is not None
        run = next(a for a in batch.applications if a.status == ApplicationStatus.APPLIED).production_run
        run.organic_carbon_fraction = 0.5 if run.organic_carbon_fraction != 0.5 else 0.55
        run.updated_at = datetime.now(UTC)
    mass_t, fraction = _expected(world, row.entity_id)
    creates = world.stats()["requests"]["creates_succeeded"]["total"]
    with world.engine() as engine:
        retried = engine.sync_entity("credit_batch", row.entity_id)
    assert retried.status == "synced", retried.message
    assert [(s.external_entity_type, s.action) for s in retried.steps] == [
        ("datapoint_applied_biochar_mass", "unchanged"),
        ("datapoint_organic_carbon_fraction", "updated"),
        ("ghg_entry", "unchanged"),
        ("ghg_statement", "unchanged"),
        ("ghg_statement_submission", "submitted"),
    ]
    assert world.stats()["requests"]["creates_succeeded"]["total"] == creates, "corrected in place"
    carbon = next(
        d
        for d in _stored(world, "datapoints")
        if d["supplier_reference_id"]
        == supplier_reference("datapoint_organic_carbon_fraction", row.entity_id)
    )
    assert carbon["quantity"]["magnitude"] == pytest.approx(fraction, abs=1e-6)
    entry = next(
        e
        for e in _stored(world, "ghg_entries")
        if e["supplier_reference_id"] == supplier_reference("ghg_entry", row.entity_id)
    )
    assert entry["co2e_net_removed_without_discount_kg"] == pytest.approx(
        mass_t * 1000 * fraction * 44 / 12, rel=1e-5
    )


def test_a_run_without_organic_carbon_blocks_its_credit_batch_before_any_request(world: SyncWorld) -> None:
    world.seed(scale=8, with_invalid=False)
    world.link()
    with world.sessions.begin() as session:
        batch = session.scalars(select(CreditBatch)).first()
        assert batch is not None
        batch_id = str(batch.id)
        run_id = next(
            a.production_run_id for a in batch.applications if a.status == ApplicationStatus.APPLIED
        )
        run = session.get(ProductionRun, run_id)
        assert run is not None
        run.organic_carbon_fraction = None
    with world.engine() as engine:
        engine.sync_all("pending")
        result = engine.sync_entity("credit_batch", batch_id)
    assert result.status == "error"
    assert "organic_carbon_fraction" in (result.message or "") and str(run_id) in (result.message or "")
    stored = {d["supplier_reference_id"] for d in _stored(world, "datapoints")}
    assert supplier_reference("datapoint_applied_biochar_mass", batch_id) not in stored


def test_a_template_mismatch_is_the_registrys_422(world: SyncWorld) -> None:
    world.seed(scale=8, with_invalid=False)
    world.link()
    settings = world.settings.model_copy(
        update={
            "isometric_template_inputs": {"rtc_1DEMOCOMPONENT01": {"biochar_mass": "applied_biochar_mass"}}
        }
    )
    mismatched = SyncWorld(world.db_url, world.emulator, settings)
    with mismatched.engine() as engine:
        report = engine.sync_all("pending")
    batches = [r for r in report.results if r.entity_type == "credit_batch"]
    assert batches and all(r.status == "error" for r in batches)
    assert "'biochar_mass' is not an input of component rtc_1DEMOCOMPONENT01" in (batches[0].message or "")
    assert world.stats()["objects"]["ghg_entries"] == 0


def test_template_inputs_setting_names_the_variable_on_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ISOMETRIC_TEMPLATE_INPUTS", '{"rtc_1DEMOCOMPONENT01": {"biochar_mass_applied": "mass"}}'
    )
    with pytest.raises(
        ValidationError, match="ISOMETRIC_TEMPLATE_INPUTS names unknown monitored values"
    ) as exc:
        Settings()
    assert "applied_biochar_mass, organic_carbon_fraction" in str(exc.value)
    monkeypatch.setenv("ISOMETRIC_TEMPLATE_INPUTS", "{not json")
    with pytest.raises(ValidationError, match="ISOMETRIC_TEMPLATE_INPUTS is not valid JSON"):
        Settings()
    monkeypatch.setenv(
        "ISOMETRIC_TEMPLATE_INPUTS", '{"rtc_1OTHER0000000001": {"mass_in": "applied_biochar_mass"}}'
    )
    settings = Settings()
    assert settings.isometric_template_inputs == {"rtc_1OTHER0000000001": {"mass_in": "applied_biochar_mass"}}
    adapter = IsometricAdapter(None, template_id="rvt_1X", template_inputs=settings.isometric_template_inputs)
    assert adapter.template_inputs == settings.isometric_template_inputs
