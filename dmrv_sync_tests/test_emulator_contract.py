"""The emulator in process: every answer checked against Isometric's published spec (with the 2026-06
rename applied), and the behaviour the process tests do not cover."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from dmrv_sync.emulator import EmulatorConfig
from dmrv_sync.settings import Settings
from dmrv_sync_tests.contract import load_contract
from dmrv_sync_tests.fixtures.contract import response_violations
from dmrv_sync_tests.fixtures.emulator import (
    RunningEmulator,
    assert_spec_422,
    datapoint_body,
    demo_components,
    ghg_entry_body,
    locs,
    production_batch_body,
)

PROJECT_ID = Settings().isometric_project_id
TEMPLATE_ID = Settings().isometric_ghg_entry_template_id
EXAMPLE_CONFIG = Path(__file__).parents[1] / "dmrv_sync" / "emulator" / "example_config.json"


class AnswerRecorder:
    """Collects every /mrv/v0 answer of a raw httpx client (which may send invalid requests on
    purpose), then checks each against the renamed spec (dmrv_sync_tests/contract.py)."""

    def __init__(self, emulator: RunningEmulator) -> None:
        self.responses: list[httpx.Response] = []
        self.client = httpx.Client(
            base_url=emulator.base_url,
            headers=emulator.auth_headers,
            timeout=10,
            event_hooks={"response": [self._record]},
        )
        self.routes = emulator.server.api.router if emulator.server else None

    def _record(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def check(self) -> set[tuple[str, str, int]]:
        """(method, emulator route, status) of every answer; fails on any the spec does not allow."""
        contract = load_contract()  # skips without the spec file, fails in CI
        assert self.routes is not None
        covered = set()
        problems: list[str] = []
        for response in self.responses:
            method = response.request.method
            path = response.request.url.path.removeprefix("/mrv/v0")
            route, _, _ = self.routes.match(method, path)
            assert route is not None, f"{method} {path}"
            if response.status_code not in contract.documented_statuses(method, path):
                problems.append(f"{method} {route.template} answered {response.status_code}, undocumented")
            covered.add((method, route.template, response.status_code))
            problems += response_violations(contract, response)
        assert not problems, "\n".join(problems)
        return covered


def test_every_answer_matches_the_spec(emulator: RunningEmulator) -> None:
    load_contract()  # skip (fail in CI) before doing anything without the spec
    recorder = AnswerRecorder(emulator)
    api = recorder.client
    feedstock_type = emulator.admin.provision_feedstock_type("Forestry residues", "feedstock-1")
    api.get("/feedstock_types", params={"supplier_reference_id": "feedstock-1"})
    api.get("/feedstock_types", params={"first": 51})

    batch = api.post("/production_batches", json=production_batch_body(feedstock_type["id"], "pr-1")).json()
    spare = api.post("/production_batches", json=production_batch_body(feedstock_type["id"], "pr-2")).json()
    api.post("/production_batches", json={"kind": "biochar"})
    api.get("/production_batches", params={"first": 1})
    api.get(f"/production_batches/{batch['id']}")
    api.delete(f"/production_batches/{spare['id']}")

    locations = f"/projects/{PROJECT_ID}/storage_locations"
    location = api.post(
        locations, json={"project_id": PROJECT_ID, "name": "Field A", "latitude": 52.1, "longitude": 5.3}
    ).json()
    spare_location = api.post(
        locations,
        json={
            "project_id": PROJECT_ID,
            "name": "Field B",
            "latitude": 1,
            "longitude": 2,
            "supplier_reference_id": "x",
        },
    ).json()
    api.get(locations)
    api.get(f"{locations}/{location['id']}")
    api.patch(
        f"{locations}/{location['id']}", json={"name": "Field A (north)", "storage_method": "biochar_field"}
    )
    api.patch(f"{locations}/{location['id']}", json={"latitude": 100})
    api.delete(f"{locations}/{spare_location['id']}")

    application = api.post(
        "/biochar_applications",
        json={
            "project_id": PROJECT_ID,
            "storage_site_id": location["id"],
            "production_batch_id": batch["id"],
            "application_date": "2026-03-05",
            "average_application_rate": {"magnitude": 5, "unit": "t/ha"},
            "truck_mass_on_arrival": {"magnitude": 20, "unit": "t"},
            "truck_mass_on_departure": {"magnitude": 8, "unit": "t", "standard_deviation": 0.1},
            "supplier_reference_id": "app-1",
        },
    ).json()
    api.get("/biochar_applications")
    api.get(f"/biochar_applications/{application['id']}")
    api.delete(f"/production_batches/{batch['id']}")  # 422: used by the application
    api.delete(f"/biochar_applications/{application['id']}")

    mass = api.post("/datapoints", json=datapoint_body("dp-mass", 12.0, "t")).json()
    fraction = api.post("/datapoints", json=datapoint_body("dp-fraction", 0.8, None)).json()
    api.post("/datapoints", json={**datapoint_body("dp-bad", 1), "source_ids": ["src_1UNKNOWN00000000"]})
    api.get("/datapoints", params={"supplier_reference_id": "dp-mass"})
    api.get(f"/datapoints/{mass['id']}")
    api.patch(
        f"/datapoints/{fraction['id']}", json={"quantity": {"magnitude": 0.75, "unit": "dimensionless"}}
    )
    templates = f"/projects/{PROJECT_ID}/ghg_entry_templates"
    api.get(templates)
    api.get(f"{templates}/{TEMPLATE_ID}")

    entry = api.post(
        "/ghg_entries", json=ghg_entry_body("cb-1", components=demo_components(mass["id"], fraction["id"]))
    ).json()
    spare_entry = api.post("/ghg_entries", json=ghg_entry_body("cb-2", completed_on="2026-05-31")).json()
    api.get("/ghg_entries", params={"supplier_reference_id": "cb-1"})
    api.get(f"/ghg_entries/{entry['id']}")
    api.patch(f"/ghg_entries/{entry['id']}", json={"completed_on": "2026-03-30"})
    api.delete(f"/ghg_entries/{spare_entry['id']}")

    statement = api.post("/ghg_statements", json={"project_id": PROJECT_ID, "end_on": "2026-03-31"}).json()
    api.post("/ghg_statements", json={"project_id": PROJECT_ID, "end_on": "2026-03-31"})  # 422: nothing left
    api.get("/ghg_statements")
    api.get(f"/ghg_statements/{statement['id']}")
    api.post(
        f"/ghg_statements/{statement['id']}/submit", json={"ghg_statement_report_url": "https://r.example/1"}
    )
    emulator.admin.set_statement_status(statement["id"], "FAILED_VERIFICATION")
    api.patch(f"/ghg_entries/{entry['id']}", json={"started_on": "2026-03-02"})
    api.get(f"/ghg_statements/{statement['id']}")  # pending_total_co2e_removed_kg set
    api.post(
        f"/ghg_statements/{statement['id']}/submit",
        json={"ghg_statement_report_url": "https://r.example/2", "summary_of_changes": "Dates fixed"},
    )
    emulator.admin.set_statement_status(statement["id"], "CREDITS_ISSUED")
    api.get(f"/ghg_statements/{statement['id']}")
    assert api.get(f"/datapoints/{mass['id']}").json()["locked_status"] == "locked_used_in_verified_removal"
    api.patch(f"/datapoints/{mass['id']}", json={"description": "late fix"})  # 422: locked

    covered = recorder.check()
    assert emulator.server is not None
    every_route = {(route.method, route.template) for route in emulator.server.api.router.routes}
    assert {(method, template) for method, template, _ in covered} == every_route


# --- behaviour beyond the process tests -------------------------------------------------------------


def test_backward_pagination(emulator: RunningEmulator) -> None:
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        ids = [api.post("/ghg_entries", json=ghg_entry_body(f"cb-{n}")).json()["id"] for n in range(7)]
        last_page = api.get("/ghg_entries", params={"last": 3}).json()
        assert [n["id"] for n in last_page["nodes"]] == ids[4:]
        assert last_page["page_info"]["has_previous_page"] and not last_page["page_info"]["has_next_page"]
        before = api.get(
            "/ghg_entries", params={"last": 3, "before": last_page["page_info"]["start_cursor"]}
        ).json()
        assert [n["id"] for n in before["nodes"]] == ids[1:4]
        assert (
            api.get("/ghg_entries", params={"supplier_reference_id": "cb-2"}).json()["nodes"][0]["id"]
            == ids[2]
        )


def test_pre_rename_field_names_are_rejected_with_the_new_name(emulator: RunningEmulator) -> None:
    body = ghg_entry_body("cb-1")
    body["removal_template_id"] = body.pop("ghg_entry_template_id")
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        detail = assert_spec_422(api.post("/ghg_entries", json=body))
        assert locs(detail) == [["body", "removal_template_id"]]
        assert "ghg_entry_template_id" in detail[0]["msg"]
        assert api.get("/removals").status_code == 404


def test_storage_location_patch_and_undefined_fields(emulator: RunningEmulator) -> None:
    path = f"/projects/{PROJECT_ID}/storage_locations"
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        location = api.post(
            path, json={"project_id": PROJECT_ID, "name": "A", "latitude": 1, "longitude": 2}
        ).json()
        assert location["storage_method"] == "biochar_field" and location["supplier_reference_id"] is None
        # Omitted is "Undefined" (unchanged); an explicit null is not allowed for these fields.
        assert_spec_422(api.patch(f"{path}/{location['id']}", json={"supplier_reference_id": None}))
        patched = api.patch(
            f"{path}/{location['id']}", json={"supplier_reference_id": "app-1", "longitude": 3}
        ).json()
        assert patched == {**location, "supplier_reference_id": "app-1", "longitude": 3.0}
        detail = assert_spec_422(
            api.post(
                path, json={"project_id": "prj_1OTHERPROJECT0001", "name": "B", "latitude": 1, "longitude": 2}
            )
        )
        assert locs(detail) == [["body", "project_id"]]


def test_entries_of_a_statement_with_the_verifier_are_locked(emulator: RunningEmulator) -> None:
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        entry = api.post("/ghg_entries", json=ghg_entry_body("cb-1")).json()
        statement = api.post(
            "/ghg_statements", json={"project_id": PROJECT_ID, "end_on": "2026-03-31"}
        ).json()
        api.post(
            f"/ghg_statements/{statement['id']}/submit",
            json={"ghg_statement_report_url": "https://r.example"},
        )
        detail = assert_spec_422(
            api.patch(f"/ghg_entries/{entry['id']}", json={"completed_on": "2026-03-30"})
        )
        assert statement["id"] in detail[0]["msg"]


def test_auto_verify_moves_submitted_statements_to_credits_issued(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_factory(EmulatorConfig(auto_verify_after_seconds=0.1))
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        api.post("/ghg_entries", json=ghg_entry_body("cb-1"))
        statement = api.post(
            "/ghg_statements", json={"project_id": PROJECT_ID, "end_on": "2026-03-31"}
        ).json()
        api.post(
            f"/ghg_statements/{statement['id']}/submit",
            json={"ghg_statement_report_url": "https://r.example"},
        )
        deadline = time.monotonic() + 10
        seen: list[str] = []
        while time.monotonic() < deadline:
            current = api.get(f"/ghg_statements/{statement['id']}").json()
            if not seen or seen[-1] != current["status"]:
                seen.append(current["status"])
            if current["status"] == "CREDITS_ISSUED":
                break
            time.sleep(0.05)  # polling, as a client would; the deadline bounds it
        assert seen[-1] == "CREDITS_ISSUED" and current["credits_issued_at"] and current["verifier"]


def test_example_config_loads_and_provisions(emulator_factory: Callable[..., RunningEmulator]) -> None:
    config = EmulatorConfig.from_file(EXAMPLE_CONFIG).model_copy(update={"faults": EmulatorConfig().faults})
    emulator = emulator_factory(config)
    provisioned = emulator.admin.provisioned()
    assert provisioned["feedstock_types"] == [
        {
            "id": "ftt_1DEMOFEEDSTOCK01",
            "name": "Forestry residues",
            "supplier_reference_id": "feedstock-type-1",
        }
    ]
    assert [f["id"] for f in provisioned["facilities"]] == ["fcl_1DEMOFACILITY001", "fcl_1DEMOFACILITY002"]
    assert EmulatorConfig.from_file(EXAMPLE_CONFIG).faults.rate_limit is not None


def test_default_provisioning_matches_the_settings(emulator: RunningEmulator) -> None:
    provisioned = emulator.admin.provisioned()
    settings = Settings()
    assert [p["id"] for p in provisioned["projects"]] == [settings.isometric_project_id]
    assert [t["id"] for t in provisioned["ghg_entry_templates"]] == [settings.isometric_ghg_entry_template_id]
    assert [f["id"] for f in provisioned["facilities"]] == [f"fcl_1DEMOFACILITY00{n}" for n in range(1, 6)]
    assert provisioned["feedstock_types"] == []


# --- datapoints and GHG entry templates -------------------------------------------------------------


def test_ghg_entry_template_lists_its_components_and_inputs(emulator: RunningEmulator) -> None:
    recorder = AnswerRecorder(emulator)
    path = f"/projects/{PROJECT_ID}/ghg_entry_templates"
    template = recorder.client.get(f"{path}/{TEMPLATE_ID}").json()
    listed = recorder.client.get(path).json()
    recorder.check()
    assert listed["nodes"] == [template] and listed["total_count"] == 1
    inputs = {
        (component["id"], i["input_key"]): (i["quantity_kind"], i["type"], i["datapoint_id"])
        for group in template["groups"]
        for component in group["components"]
        for i in component["inputs"]
    }
    assert inputs == {
        ("rtc_1DEMOCOMPONENT01", "biochar_mass_applied"): ("mass", "monitored", None),
        ("rtc_1DEMOCOMPONENT02", "organic_carbon_fraction"): ("mass_fraction", "monitored", None),
    }
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        assert api.get(f"{path}/rvt_1UNKNOWN00000000").status_code == 404


def test_ghg_entry_inputs_are_checked_against_the_template(emulator: RunningEmulator) -> None:
    recorder = AnswerRecorder(emulator)
    api = recorder.client
    mass = api.post("/datapoints", json=datapoint_body("dp-mass", 12.0, "t")).json()
    fraction = api.post("/datapoints", json=datapoint_body("dp-fraction", 0.8, "dimensionless")).json()

    unknown_component = demo_components(mass["id"], fraction["id"])
    unknown_component[1]["ghg_entry_template_component_id"] = "rtc_1UNKNOWN00000000"
    detail = assert_spec_422(
        api.post("/ghg_entries", json=ghg_entry_body("cb-1", components=unknown_component))
    )
    assert locs(detail) == [["body", "ghg_entry_template_components", 1, "ghg_entry_template_component_id"]]
    assert TEMPLATE_ID in detail[0]["msg"]

    unknown_input = demo_components(mass["id"], fraction["id"])
    unknown_input[0]["inputs"][0]["input_key"] = "biochar_mass"
    detail = assert_spec_422(api.post("/ghg_entries", json=ghg_entry_body("cb-1", components=unknown_input)))
    assert locs(detail) == [["body", "ghg_entry_template_components", 0, "inputs", 0, "input_key"]]
    assert "biochar_mass_applied" in detail[0]["msg"], "the message lists the component's inputs"

    unknown_datapoint = demo_components("dtp_1UNKNOWN00000000", fraction["id"])
    detail = assert_spec_422(
        api.post("/ghg_entries", json=ghg_entry_body("cb-1", components=unknown_datapoint))
    )
    assert locs(detail) == [["body", "ghg_entry_template_components", 0, "inputs", 0, "datapoint_id"]]
    assert "dtp_1UNKNOWN00000000" in detail[0]["msg"]

    swapped = demo_components(fraction["id"], mass["id"])  # a fraction where a mass belongs, and back
    detail = assert_spec_422(api.post("/ghg_entries", json=ghg_entry_body("cb-1", components=swapped)))
    assert len(detail) == 2 and "not a unit of mass" in detail[0]["msg"]

    assert api.get("/ghg_entries").json()["total_count"] == 0
    recorder.check()


def test_ghg_entry_co2e_comes_from_its_datapoints(emulator: RunningEmulator) -> None:
    recorder = AnswerRecorder(emulator)
    api = recorder.client
    mass = api.post("/datapoints", json=datapoint_body("dp-mass", 12.0, "t")).json()
    fraction = api.post("/datapoints", json=datapoint_body("dp-fraction", 0.8, "dimensionless")).json()
    entry = api.post(
        "/ghg_entries", json=ghg_entry_body("cb-1", components=demo_components(mass["id"], fraction["id"]))
    ).json()
    # 12 t x 0.8 x 44/12 = 35,200 kg CO2e; the demo template discounts 5 %.
    assert entry["co2e_net_removed_without_discount_kg"] == 35200.0
    assert entry["co2e_net_removed_kg"] == 33440.0
    without_inputs = api.post("/ghg_entries", json=ghg_entry_body("cb-2", completed_on="2026-02-28")).json()
    assert without_inputs["co2e_net_removed_without_discount_kg"] == 1000.0  # the template's fixed figure

    patched = api.patch(f"/datapoints/{fraction['id']}", json={"quantity": {"magnitude": 0.75, "unit": "%"}})
    assert patched.json()["quantity"] == {"magnitude": 0.75, "unit": "%", "standard_deviation": None}
    recalculated = api.get(f"/ghg_entries/{entry['id']}").json()
    assert recalculated["co2e_net_removed_without_discount_kg"] == 330.0  # 12 t x 0.75 % x 44/12
    by_reference = api.get("/datapoints", params={"supplier_reference_id": "dp-mass"}).json()
    assert [n["id"] for n in by_reference["nodes"]] == [mass["id"]]
    assert api.get("/datapoints", params={"first": 1}).json()["page_info"]["has_next_page"]
    recorder.check()
    stats = emulator.admin.stats()
    assert stats["objects"]["datapoints"] == 2
    assert stats["requests"]["creates_succeeded"]["datapoints"] == 2


def test_a_reused_datapoint_reference_is_counted_as_a_duplicate(emulator: RunningEmulator) -> None:
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers) as api:
        for _ in range(2):
            assert api.post("/datapoints", json=datapoint_body("dp-twice", 1.0)).status_code == 200
    assert emulator.admin.stats()["duplicate_supplier_reference_ids"]["datapoints"] == 1
