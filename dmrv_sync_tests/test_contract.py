"""The Isometric client honours the published Certify contract (renamed for 2026-06-04).

- the rename is applied to the spec the way README's table says;
- every endpoint the client can call exists in the spec, and the models' fields match the spec's schemas;
- a full run against the emulator, recorded, sends only valid requests, gets only valid answers, and
  exercises every endpoint the client knows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from dmrv_sync.registries.isometric import ENDPOINTS, models
from dmrv_sync_tests import contract as contract_module
from dmrv_sync_tests.contract import SCHEMA_ALIASES, Contract, ContractViolation, load_contract
from dmrv_sync_tests.fixtures.contract import ContractRecorder
from dmrv_sync_tests.fixtures.emulator import RunningEmulator
from dmrv_sync_tests.test_isometric_client_emulator import client_for, run_full_flow

# Each wire model and the spec schema it mirrors.
MODEL_SCHEMAS: dict[type[BaseModel], str] = {
    models.ScalarQuantity: "ScalarQuantity",
    models.PageInfo: "PageInfo",
    models.FeedstockType: "FeedstockType",
    models.CreateProductionBatchRequest: "CreateProductionBatchRequest",
    models.ProductionBatch: "ProductionBatch",
    models.CreateStorageLocationRequest: "CreateStorageLocationRequest",
    models.UpdateStorageLocationRequest: "PatchStorageLocationRequest",
    models.StorageLocation: "StorageLocation",
    models.CreateBiocharApplicationRequest: "CreateBiocharApplicationRequest",
    models.BiocharApplication: "BiocharApplication",
    models.CreateComponentScalarInput: "CreateComponentScalarInput",
    models.CreateComponentListInput: "CreateComponentListInput",
    models.GhgEntryTemplateComponentInputs: "RemovalTemplateComponentInputs",
    models.CreateGhgEntryRequest: "CreateRemovalRequest",
    models.GhgEntry: "Removal",
    models.CreateGhgStatementRequest: "CreateGhgStatementRequest",
    models.GhgStatement: "GhgStatement",
    models.SubmitGhgStatementRequest: "SubmitGhgStatementRequest",
    models.ResubmitGhgStatementRequest: "ResubmitGhgStatementRequest",
}


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract()


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_the_rename_is_applied(contract: Contract) -> None:
    paths = contract.spec["paths"]
    assert "/ghg_entries" in paths and "/ghg_entries/{id}" in paths
    assert not any(p.startswith("/removals") for p in paths)
    assert "/projects/{project_id}/ghg_entry_templates" in paths
    schemas = contract.spec["components"]["schemas"]
    create_entry = schemas["CreateRemovalRequest"]["properties"]
    assert {"ghg_entry_template_id", "ghg_entry_template_components"} <= set(create_entry)
    assert "removal_template_id" not in create_entry
    assert "ghg_entry_template_component_id" in schemas["RemovalTemplateComponentInputs"]["required"]
    assert "ghg_entry_ids" in schemas["GhgStatement"]["required"]
    assert "removal_ids" not in schemas["GhgStatement"]["properties"]
    component_params = {p["name"] for p in paths["/components"]["get"]["parameters"]}
    assert "ghg_entry_id" in component_params and "removal_id" not in component_params
    assert set(SCHEMA_ALIASES) <= set(schemas)


def test_pre_rename_fields_break_the_contract(contract: Contract) -> None:
    body = {
        "project_id": "prj_1CTWZQGKE1S0VAXA",
        "supplier_reference_id": "cb-1",
        "started_on": "2026-01-01",
        "completed_on": "2026-01-31",
        "removal_template_id": "rvt_1EVC8RZFE1S0BAT6",
    }
    errors = contract.request_errors("POST", "/ghg_entries", body)
    assert any("removal_template_id" in e for e in errors)
    with pytest.raises(ContractViolation, match="no such path"):
        contract.request_errors("POST", "/removals", body)
    del body["removal_template_id"]
    assert (
        contract.request_errors(
            "POST", "/ghg_entries", {**body, "ghg_entry_template_id": "rvt_1EVC8RZFE1S0BAT6"}
        )
        == []
    )


@pytest.mark.parametrize(("method", "template"), sorted(ENDPOINTS))
def test_every_client_endpoint_is_in_the_spec(contract: Contract, method: str, template: str) -> None:
    operation = contract.operation(method, template)
    assert operation.template == template


@pytest.mark.parametrize("model", list(MODEL_SCHEMAS), ids=lambda m: m.__name__)
def test_model_fields_match_the_spec_schema(contract: Contract, model: type[BaseModel]) -> None:
    schema = contract.spec["components"]["schemas"][MODEL_SCHEMAS[model]]
    spec_fields = set(schema.get("properties", {}))
    ours = wire_names(model)
    assert ours - spec_fields == set(), f"{model.__name__} has fields the spec does not: {ours - spec_fields}"
    if issubclass(model, models._Request):
        # Every field the spec requires is one we model (and send: none of them is optional here).
        required = set(schema.get("required", []))
        assert required <= ours
        assert all(
            model.model_fields[n].is_required() or n == "kind" for n in required if n in model.model_fields
        )
    else:
        # Responses model everything the spec documents, so nothing silently lands in `model_extra`.
        assert spec_fields - ours == set(), f"{model.__name__} misses spec fields: {spec_fields - ours}"


def test_recorded_full_run_is_valid_and_covers_every_endpoint(
    emulator: RunningEmulator, contract_recorder: ContractRecorder
) -> None:
    emulator.admin.provision_feedstock_type("Wood chips", "fs-wood")
    with client_for(emulator, contract_recorder) as client:
        run_full_flow(client, client.project_id)
    missing = ENDPOINTS - contract_recorder.exercised
    assert not missing, f"endpoints the client has but the run never called: {sorted(missing)}"
    unlisted = contract_recorder.exercised - ENDPOINTS
    assert not unlisted, f"the client called endpoints missing from ENDPOINTS: {sorted(unlisted)}"
    assert contract_recorder.exchanges, "nothing was recorded"
    contract_recorder.assert_valid()


def test_missing_spec_skips_outside_ci_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMRV_SHARED_DIR", str(tmp_path))
    monkeypatch.setattr(contract_module, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="DMRV_SHARED_DIR"):
        contract_module.require_spec()
    monkeypatch.setattr(contract_module, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        contract_module.require_spec()
