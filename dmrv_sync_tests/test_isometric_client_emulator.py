"""IsometricClient against the Certify emulator (a real HTTP server on loopback), fault by fault.

Each injected fault ends either recovered (the call succeeds) or as the right typed error — and a create
whose answer was lost is never re-sent: the emulator's own counters prove exactly one object exists.
Every exchange is also checked against the published spec by `contract_recorder`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from dmrv_sync.emulator import EmulatorConfig, FaultConfig
from dmrv_sync.registries.budget import LocalBudget, UnlimitedBudget
from dmrv_sync.registries.errors import AuthError, NotFound, OutcomeUnknown, RegistryError, ValidationRejected
from dmrv_sync.registries.isometric import (
    CreateBiocharApplicationRequest,
    CreateComponentScalarInput,
    CreateDatapointRequest,
    CreateGhgEntryRequest,
    CreateGhgStatementRequest,
    CreateProductionBatchRequest,
    CreateStorageLocationRequest,
    DatapointType,
    GhgEntryTemplateComponentInputs,
    IsometricClient,
    ProductionBatch,
    ScalarQuantity,
    StorageMethod,
    SubmitGhgStatementRequest,
    UpdateDatapointRequest,
    UpdateStorageLocationRequest,
)
from dmrv_sync.settings import DEMO_GHG_ENTRY_TEMPLATE_ID, Settings
from dmrv_sync_tests.fixtures.contract import ContractRecorder
from dmrv_sync_tests.fixtures.emulator import RunningEmulator

FACILITY_ID = "fcl_1DEMOFACILITY001"


def batch_request(ref: str, feedstock_type_id: str) -> CreateProductionBatchRequest:
    return CreateProductionBatchRequest(
        facility_id=FACILITY_ID,
        feedstock_type_ids=[feedstock_type_id],
        supplier_reference_id=ref,
        started_at=datetime(2026, 1, 1, 8, tzinfo=UTC),
        ended_at=datetime(2026, 1, 2, 8, tzinfo=UTC),
        mass=ScalarQuantity(magnitude=12.5, unit="t"),
    )


def client_for(
    emulator: RunningEmulator, recorder: ContractRecorder | None = None, **kwargs: Any
) -> IsometricClient:
    settings = Settings()
    options: dict[str, Any] = {
        "base_url": emulator.base_url,
        "client_secret": settings.isometric_client_secret,
        "access_token": settings.isometric_access_token,
        "project_id": settings.isometric_project_id,
        "budget": UnlimitedBudget(),
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "max_attempts": 6,
        "timeout": httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0),
    }
    if recorder is not None:
        options["event_hooks"] = recorder.event_hooks
    options.update(kwargs)
    return IsometricClient(**options)


@pytest.fixture
def feedstock_type_id(emulator: RunningEmulator) -> str:
    return str(emulator.admin.provision_feedstock_type("Wood chips", "fs-wood")["id"])


def posts(emulator: RunningEmulator, template: str) -> int:
    return int(emulator.admin.stats()["requests"]["by_route"].get(f"POST {template}", 0))


def objects(emulator: RunningEmulator, resource: str) -> int:
    return int(emulator.admin.stats()["objects"][resource])


# --- the whole flow ------------------------------------------------------------------------------


def run_full_flow(client: IsometricClient, project_id: str) -> dict[str, Any]:
    """Every endpoint the client knows, in the order the sync core uses them. Returns the objects."""
    feedstock = client.get_feedstock_type_by_reference("fs-wood")
    batch = client.create_production_batch(batch_request("pr-flow-1", feedstock.id))
    assert client.get_production_batch(batch.id) == batch
    location = client.create_storage_location(
        CreateStorageLocationRequest(
            project_id=project_id,
            name="Field 7",
            latitude=52.1,
            longitude=5.2,
            storage_method=StorageMethod.BIOCHAR_FIELD,
            supplier_reference_id="ap-flow-1:storage_location",
        )
    )
    renamed = client.update_storage_location(location.id, UpdateStorageLocationRequest(name="Field 7 north"))
    assert renamed.name == "Field 7 north"
    assert client.get_storage_location(location.id).name == "Field 7 north"
    application = client.create_biochar_application(
        CreateBiocharApplicationRequest(
            project_id=project_id,
            production_batch_id=batch.id,
            storage_site_id=location.id,
            application_date=date(2026, 1, 10),
            average_application_rate=ScalarQuantity(magnitude=4, unit="t/ha"),
            truck_mass_on_arrival=ScalarQuantity(magnitude=22, unit="t"),
            truck_mass_on_departure=ScalarQuantity(magnitude=10, unit="t"),
            supplier_reference_id="ap-flow-1",
        )
    )
    assert client.get_biochar_application(application.id).storage_location_id == location.id
    template = client.get_ghg_entry_template(DEMO_GHG_ENTRY_TEMPLATE_ID)
    inputs = {(c.id, i.input_key) for c in template.components for i in c.inputs}
    assert ("rtc_1DEMOCOMPONENT01", "biochar_mass_applied") in inputs
    mass = client.create_datapoint(
        CreateDatapointRequest(
            project_id=project_id,
            supplier_reference_id="cb-flow-1:mass",
            display_name="Applied biochar mass",
            type=DatapointType.REPORTED,
            quantity=ScalarQuantity(magnitude=12, unit="t"),
            description="Sum of applied masses",
            source_ids=[],
        )
    )
    assert client.get_datapoint(mass.id).quantity == ScalarQuantity(magnitude=12, unit="t")
    mass = client.update_datapoint(
        mass.id, UpdateDatapointRequest(quantity=ScalarQuantity(magnitude=12.5, unit="t"))
    )
    assert mass.quantity is not None and mass.quantity.magnitude == 12.5
    entry = client.create_ghg_entry(
        CreateGhgEntryRequest(
            project_id=project_id,
            supplier_reference_id="cb-flow-1",
            started_on=date(2026, 1, 1),
            completed_on=date(2026, 1, 31),
            ghg_entry_template_id=DEMO_GHG_ENTRY_TEMPLATE_ID,
            ghg_entry_template_components=[
                GhgEntryTemplateComponentInputs(
                    ghg_entry_template_component_id="rtc_1DEMOCOMPONENT01",
                    inputs=[
                        CreateComponentScalarInput(input_key="biochar_mass_applied", datapoint_id=mass.id)
                    ],
                )
            ],
        )
    )
    assert client.get_ghg_entry(entry.id).supplier_reference_id == "cb-flow-1"
    statement = client.create_ghg_statement(
        CreateGhgStatementRequest(project_id=project_id, end_on=date(2026, 1, 31))
    )
    assert client.get_ghg_statement(statement.id).status == "DRAFT"
    submitted = client.submit_ghg_statement(
        statement.id, SubmitGhgStatementRequest(ghg_statement_report_url="https://example.org/report.pdf")
    )
    assert submitted.status == "AWAITING_VERIFICATION"
    assert [s.id for s in client.list_ghg_statements()] == [statement.id]
    found_statement = client.find_ghg_statement(date(2026, 1, 31))
    assert found_statement is not None and found_statement.id == statement.id

    found = {
        "ghg_entries": client.find_by_supplier_reference("ghg_entries", "cb-flow-1"),
        "datapoints": client.find_by_supplier_reference("datapoints", "cb-flow-1:mass"),
        "feedstock_types": client.find_by_supplier_reference("feedstock_types", "fs-wood"),
        "production_batches": client.find_by_supplier_reference("production_batches", "pr-flow-1"),
        "biochar_applications": client.find_by_supplier_reference("biochar_applications", "ap-flow-1"),
        "storage_locations": client.find_by_supplier_reference(
            "storage_locations", "ap-flow-1:storage_location"
        ),
    }
    assert {k: getattr(v, "id", None) for k, v in found.items()} == {
        "ghg_entries": entry.id,
        "datapoints": mass.id,
        "feedstock_types": feedstock.id,
        "production_batches": batch.id,
        "biochar_applications": application.id,
        "storage_locations": location.id,
    }

    # Deletes, children first, on a second chain that no statement holds.
    spare_batch = client.create_production_batch(batch_request("pr-flow-2", feedstock.id))
    spare_location = client.create_storage_location(
        CreateStorageLocationRequest(project_id=project_id, name="Spare", latitude=1, longitude=1)
    )
    spare_application = client.create_biochar_application(
        CreateBiocharApplicationRequest(
            project_id=project_id,
            production_batch_id=spare_batch.id,
            storage_site_id=spare_location.id,
            application_date=date(2026, 1, 11),
            average_application_rate=ScalarQuantity(magnitude=1, unit="t/ha"),
            truck_mass_on_arrival=ScalarQuantity(magnitude=5, unit="t"),
            truck_mass_on_departure=ScalarQuantity(magnitude=4, unit="t"),
            supplier_reference_id="ap-flow-2",
        )
    )
    spare_entry = client.create_ghg_entry(
        CreateGhgEntryRequest(
            project_id=project_id,
            supplier_reference_id="cb-flow-2",
            started_on=date(2026, 2, 1),
            completed_on=date(2026, 2, 28),
            ghg_entry_template_id=DEMO_GHG_ENTRY_TEMPLATE_ID,
        )
    )
    client.delete_ghg_entry(spare_entry.id)
    client.delete_biochar_application(spare_application.id)
    client.delete_storage_location(spare_location.id)
    client.delete_production_batch(spare_batch.id)
    with pytest.raises(NotFound):
        client.get_production_batch(spare_batch.id)
    return {
        "batch": batch,
        "location": location,
        "application": application,
        "datapoint": mass,
        "entry": entry,
        "statement": statement,
    }


def test_full_flow_against_the_emulator(
    emulator: RunningEmulator, feedstock_type_id: str, contract_recorder: ContractRecorder
) -> None:
    with client_for(emulator, contract_recorder) as client:
        run_full_flow(client, client.project_id)
    stats = emulator.admin.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0


def test_find_many_settles_references_across_pages(emulator: RunningEmulator, feedstock_type_id: str) -> None:
    with client_for(emulator) as client:
        for n in range(60):
            client.create_production_batch(batch_request(f"pr-many-{n}", feedstock_type_id))
        before = emulator.admin.stats()["requests"]["total"]
        found = client.find_many_by_supplier_reference(
            "production_batches", ["pr-many-3", "pr-many-55", "pr-missing"]
        )
        listing_requests = emulator.admin.stats()["requests"]["total"] - before
    assert sorted(found) == ["pr-many-3", "pr-many-55"]
    assert listing_requests == 2  # 60 objects at 50 a page: one pass for every reference


# --- faults: recovered, or the right typed error --------------------------------------------------


def test_latency_is_absorbed(emulator: RunningEmulator, feedstock_type_id: str) -> None:
    emulator.admin.set_faults(FaultConfig(latency={"fixed_ms": 50, "jitter_ms": 20}))
    with client_for(emulator) as client:
        batch = client.create_production_batch(batch_request("pr-latency", feedstock_type_id))
    assert batch.supplier_reference_id == "pr-latency"


def test_rate_limit_is_recovered_by_honouring_retry_after(
    emulator: RunningEmulator, feedstock_type_id: str, contract_recorder: ContractRecorder
) -> None:
    emulator.admin.set_faults(FaultConfig(rate_limit={"rate_per_second": 4, "burst": 1}))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with client_for(emulator, contract_recorder, sleep=sleep) as client:
        for _ in range(3):
            assert client.get_feedstock_type_by_reference("fs-wood").id == feedstock_type_id
    assert emulator.admin.stats()["requests"]["faults_injected"]["rate_limit"] >= 1
    assert waits and all(w >= 1.0 for w in waits)  # the emulator's Retry-After, whole seconds


def test_pacing_at_the_registry_rate_never_meets_a_429(
    emulator: RunningEmulator, feedstock_type_id: str
) -> None:
    """A token bucket of burst 1 at 5/s is the strictest limiter; even pacing just under it passes."""
    emulator.admin.set_faults(FaultConfig(rate_limit={"rate_per_second": 5, "burst": 1}))
    with client_for(emulator, budget=LocalBudget(4.5), max_attempts=1) as client:
        for _ in range(8):
            client.get_feedstock_type_by_reference("fs-wood")
    assert emulator.admin.stats()["requests"]["faults_injected"]["rate_limit"] == 0


def test_server_errors_on_reads_are_retried(emulator: RunningEmulator, feedstock_type_id: str) -> None:
    emulator.admin.set_faults(FaultConfig(seed=3, server_errors={"rate": 0.5, "methods": ["GET"]}))
    with client_for(emulator) as client:
        for _ in range(6):
            client.get_feedstock_type_by_reference("fs-wood")
    assert emulator.admin.stats()["requests"]["faults_injected"]["server_error"] >= 1


def test_server_error_on_a_create_is_outcome_unknown_and_not_resent(
    emulator: RunningEmulator, feedstock_type_id: str
) -> None:
    emulator.admin.set_faults(
        FaultConfig(server_errors={"rate": 1.0, "methods": ["POST"], "statuses": [503]})
    )
    with client_for(emulator) as client, pytest.raises(OutcomeUnknown) as caught:
        client.create_production_batch(batch_request("pr-5xx", feedstock_type_id))
    assert caught.value.status_code == 503
    assert posts(emulator, "/production_batches") == 1


def test_connection_reset_on_reads_is_retried(emulator: RunningEmulator, feedstock_type_id: str) -> None:
    emulator.admin.set_faults(FaultConfig(seed=1, connection_reset={"rate": 0.5, "methods": ["GET"]}))
    with client_for(emulator) as client:
        for _ in range(6):
            client.get_feedstock_type_by_reference("fs-wood")
    assert emulator.admin.stats()["requests"]["faults_injected"]["connection_reset"] >= 1


def test_connection_reset_on_a_create_is_unknown_then_reconciled_then_resent(
    emulator: RunningEmulator, feedstock_type_id: str
) -> None:
    emulator.admin.set_faults(FaultConfig(connection_reset={"rate": 1.0, "methods": ["POST"]}))
    with client_for(emulator) as client:
        with pytest.raises(OutcomeUnknown):
            client.create_production_batch(batch_request("pr-reset", feedstock_type_id))
        assert posts(emulator, "/production_batches") == 1
        # What the sync core does next: look it up; the reset happened before processing, so it is
        # absent and a resend is safe.
        assert client.find_by_supplier_reference("production_batches", "pr-reset") is None
        emulator.admin.set_faults(FaultConfig())
        client.create_production_batch(batch_request("pr-reset", feedstock_type_id))
    assert objects(emulator, "production_batches") == 1


@pytest.mark.parametrize("mode", ["drop", "delay"])
def test_a_create_whose_answer_is_lost_raises_outcome_unknown_and_is_not_resent(
    emulator: RunningEmulator, feedstock_type_id: str, mode: str
) -> None:
    emulator.admin.set_faults(
        FaultConfig(lost_response={"rate": 1.0, "methods": ["POST"], "mode": mode, "delay_seconds": 2.0})
    )
    short_read = httpx.Timeout(connect=2.0, read=0.5, write=2.0, pool=2.0)
    with client_for(emulator, timeout=short_read) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            client.create_production_batch(batch_request("pr-lost", feedstock_type_id))
        assert caught.value.needs_reconciliation
        assert posts(emulator, "/production_batches") == 1
        assert objects(emulator, "production_batches") == 1  # it was created: exactly once
        emulator.admin.set_faults(FaultConfig())
        found = client.find_by_supplier_reference("production_batches", "pr-lost")
    assert isinstance(found, ProductionBatch)


def test_validation_rule_is_rejected_with_the_registry_words(
    emulator: RunningEmulator, feedstock_type_id: str, contract_recorder: ContractRecorder
) -> None:
    emulator.admin.set_faults(
        FaultConfig(
            validation_errors=[
                {"supplier_reference_id": "^pr-bad", "msg": "Value error, mass is implausible"}
            ]
        )
    )
    with client_for(emulator, contract_recorder) as client, pytest.raises(ValidationRejected) as caught:
        client.create_production_batch(batch_request("pr-bad-1", feedstock_type_id))
    assert "body.supplier_reference_id: Value error, mass is implausible" in caught.value.summary
    assert posts(emulator, "/production_batches") == 1
    assert objects(emulator, "production_batches") == 0


def test_emulator_422_for_a_bad_reference(
    emulator: RunningEmulator, contract_recorder: ContractRecorder
) -> None:
    with client_for(emulator, contract_recorder) as client, pytest.raises(ValidationRejected) as caught:
        client.create_production_batch(batch_request("pr-no-feedstock", "ftt_1NOSUCHFEEDSTOCK1"))
    assert caught.value.detail and caught.value.permanent


def test_wrong_credentials_are_an_auth_error_not_retried(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_factory(
        EmulatorConfig(client_secret=SecretStr("right-secret-123"), access_token=SecretStr("right-token-456"))
    )
    client = client_for(emulator, client_secret="wrong-secret-789", access_token="right-token-456")
    with client, pytest.raises(AuthError):
        client.get_ghg_entry("rmv_1NOSUCHENTRY00001")
    assert emulator.admin.stats()["requests"]["total"] == 1


def test_unknown_object_is_not_found(emulator: RunningEmulator) -> None:
    with client_for(emulator) as client, pytest.raises(NotFound):
        client.get_ghg_statement("ggs_1NOSUCHSTATEMENT1")


def test_secrets_stay_out_of_logs_and_errors_against_a_real_server(
    emulator_factory: Callable[..., RunningEmulator], caplog: pytest.LogCaptureFixture
) -> None:
    secret, token = "cs-LEAKCHECK-9d8c7b6a", "tok-LEAKCHECK-1f2e3d4c"
    emulator = emulator_factory(
        EmulatorConfig(client_secret=SecretStr(secret), access_token=SecretStr(token))
    )
    emulator.admin.set_faults(
        FaultConfig(seed=2, server_errors={"rate": 0.5}, connection_reset={"rate": 0.2})
    )
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with client_for(
        emulator, client_secret=secret, access_token=token, observer=lambda r: texts.append(repr(r))
    ) as client:
        texts.append(repr(client))
        for n in range(8):
            try:
                client.get_production_batch(f"ptb_1NOSUCHBATCH{n:05d}")
            except RegistryError as exc:
                texts += [str(exc), repr(exc)]
        with client_for(emulator, client_secret="wrong-secret-000", access_token=token) as wrong:
            with pytest.raises(AuthError) as caught:
                wrong.get_ghg_entry("rmv_1NOSUCHENTRY00001")
            texts += [str(caught.value), repr(caught.value)]
    everything = "\n".join([*texts, caplog.text])
    assert secret not in everything and token not in everything


@pytest.mark.slow
def test_lost_answer_against_a_separate_emulator_process(
    emulator_process: RunningEmulator,
) -> None:
    feedstock = emulator_process.admin.provision_feedstock_type("Husks", "fs-husks")
    emulator_process.admin.set_faults(FaultConfig(lost_response={"rate": 1.0, "methods": ["POST"]}))
    with client_for(emulator_process) as client, pytest.raises(OutcomeUnknown):
        client.create_production_batch(batch_request("pr-process-lost", feedstock["id"]))
    assert posts(emulator_process, "/production_batches") == 1
    assert objects(emulator_process, "production_batches") == 1
