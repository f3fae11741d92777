"""The Isometric client honours the published Certify contract (renamed for 2026-06-04).

- the rename is applied to the spec the way README's table says;
- every endpoint the client can call exists in the spec, and the models' fields match the spec's schemas;
- a full run against the emulator, checked by the autouse contract guard, sends only valid requests,
  gets only valid answers, and exercises every endpoint the client knows;
- the guard itself: it catches bad bodies, bad query strings and bad answers from a real server, leaves
  MockTransport fakes alone, honours `contract_exempt`, and fails the test that broke the contract.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from dmrv_sync.registries.budget import UnlimitedBudget
from dmrv_sync.registries.errors import UnexpectedResponse, ValidationRejected
from dmrv_sync.registries.isometric import ENDPOINTS, IsometricClient, models
from dmrv_sync.settings import Settings
from dmrv_sync_tests import contract as contract_module
from dmrv_sync_tests.contract import SCHEMA_ALIASES, Contract, ContractViolation, load_contract
from dmrv_sync_tests.fixtures.contract import ContractGuard
from dmrv_sync_tests.fixtures.emulator import RunningEmulator, ghg_entry_body
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
    models.CreateDatapointRequest: "CreateDatapointRequest",
    models.UpdateDatapointRequest: "PatchDatapointRequest",
    models.Datapoint: "Datapoint",
    models.GhgEntryTemplate: "RemovalTemplate",
    models.GhgEntryTemplateComponentGroup: "RemovalTemplateComponentGroup",
    models.GhgEntryTemplateComponent: "RemovalTemplateComponent",
    models.GhgEntryTemplateComponentInput: "RemovalTemplateComponentInput",
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


def test_full_run_under_the_guard_is_valid_and_covers_every_endpoint(
    emulator: RunningEmulator, contract_guard: ContractGuard, contract: Contract
) -> None:
    """No explicit recorder: the autouse guard checks a plain client, both directions."""
    emulator.admin.provision_feedstock_type("Wood chips", "fs-wood")
    with client_for(emulator) as client:
        run_full_flow(client, client.project_id)
    record = contract_guard.current
    assert record is not None and record.violations == []
    assert record.requests_checked >= len(ENDPOINTS) and record.responses_checked == record.requests_checked
    missing = ENDPOINTS - record.exercised
    assert not missing, f"endpoints the client has but the run never called: {sorted(missing)}"
    unlisted = record.exercised - ENDPOINTS
    assert not unlisted, f"the client called endpoints missing from ENDPOINTS: {sorted(unlisted)}"
    assert contract_guard.exercised >= ENDPOINTS  # and the session-wide record has them


def _forget_violations(guard: ContractGuard) -> list[str]:
    """The running test's violations, removed so that the guard does not fail this test for them."""
    assert guard.current is not None
    found = list(guard.current.violations)
    guard.current.violations.clear()
    guard.current.reported = 0
    return found


def test_guard_catches_a_bad_request_body_and_query(
    emulator: RunningEmulator, contract_guard: ContractGuard, contract: Contract
) -> None:
    with client_for(emulator) as client:
        body = ghg_entry_body("cb-guard")
        body["removal_template_id"] = body.pop("ghg_entry_template_id")  # the pre-rename name
        with pytest.raises(ValidationRejected):
            client._request("POST", "/ghg_entries", json_body=body)
        with pytest.raises(ValidationRejected):  # the emulator enforces the maximum too
            client._request("GET", "/production_batches", params={"first": 51, "supplier_reference_id": "x"})
    found = _forget_violations(contract_guard)
    assert any(
        "POST /ghg_entries request body (CreateRemovalRequest)" in v
        and "removal_template_id" in v
        and "[sent: POST /mrv/v0/ghg_entries]" in v
        for v in found
    ), found
    assert any("query parameter first=" in v and "maximum of 50" in v for v in found), found
    assert any("query parameter 'supplier_reference_id': not defined by the spec" in v for v in found), found


class _BrokenRegistry(BaseHTTPRequestHandler):
    """A real HTTP server (not a MockTransport) whose answers break the contract."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        payload = json.dumps({"id": "ggs_1BROKEN000000001", "status": "MAYBE"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def broken_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mrv/v0"
    server.shutdown()
    server.server_close()


def _plain_client(base_url: str, **kwargs: Any) -> IsometricClient:
    settings = Settings()
    return IsometricClient(
        base_url=base_url,
        client_secret=settings.isometric_client_secret,
        access_token=settings.isometric_access_token,
        project_id=settings.isometric_project_id,
        budget=UnlimitedBudget(),
        max_attempts=1,
        **kwargs,
    )


def test_guard_catches_a_bad_answer_from_a_real_server(
    broken_registry: str, contract_guard: ContractGuard, contract: Contract
) -> None:
    with _plain_client(broken_registry) as client:
        client._request("GET", "/ghg_statements/{id}", path_params={"id": "ggs_1BROKEN000000001"})
    found = _forget_violations(contract_guard)
    assert any("GET /ghg_statements/{id} 200 response body (GhgStatement)" in v for v in found), found
    assert any("'MAYBE' is not one of" in v for v in found), found


def test_guard_does_not_check_mock_transport_answers(
    contract_guard: ContractGuard, contract: Contract
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"garbage": True}))
    client = _plain_client("http://127.0.0.1:9/mrv/v0", transport=transport)
    with client, pytest.raises(UnexpectedResponse):
        client.get_ghg_statement("ggs_1BROKEN000000001")
    record = contract_guard.current
    assert record is not None and record.requests_checked == 1 and record.responses_checked == 0
    assert record.violations == []


@pytest.mark.contract_exempt("checks that the marker switches the guard off")
def test_contract_exempt_switches_the_guard_off(
    emulator: RunningEmulator, contract_guard: ContractGuard
) -> None:
    with client_for(emulator) as client, pytest.raises(ValidationRejected):
        client._request("POST", "/production_batches", json_body={"kind": "biochar", "bogus": 1})
    record = contract_guard.current
    assert record is not None and record.exempt_reason and record.violations == []
    assert record.requests_checked == 0


@pytest.mark.slow
@pytest.mark.contract_exempt("the inner pytest run's clients also pass through this session's guard")
def test_a_violation_fails_the_test_that_caused_it(pytester: pytest.Pytester, contract: Contract) -> None:
    pytester.makeconftest(
        'pytest_plugins = ["dmrv_sync_tests.fixtures.emulator", "dmrv_sync_tests.fixtures.contract"]'
    )
    pytester.makepyfile(
        test_inner="""
        import pytest
        from dmrv_sync_tests.test_isometric_client_emulator import client_for

        def test_sends_a_pre_rename_field(emulator):
            with client_for(emulator) as client:
                client._request(
                    "GET", "/ghg_entries", params={"removal_id": "rmv_1X"}
                )

        @pytest.mark.contract_exempt("deliberately wrong")
        def test_exempt(emulator):
            with client_for(emulator) as client:
                client._request("GET", "/ghg_entries", params={"removal_id": "rmv_1X"})

        def test_valid(emulator):
            with client_for(emulator) as client:
                client._request("GET", "/ghg_entries", params={"first": 1})
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 Certify contract violation(s) by an IsometricClient in test_inner.py::test_sends_a_pre_rename_field*",
            "*GET /ghg_entries query parameter 'removal_id': not defined by the spec*",
            "*FAILED test_inner.py::test_sends_a_pre_rename_field*",
        ]
    )


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
