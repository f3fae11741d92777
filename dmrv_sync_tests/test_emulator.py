"""The Certify API emulator as a separate process, driven by a plain httpx client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dmrv_sync.settings import Settings
from dmrv_sync_tests.fixtures.emulator import (
    PROJECT_ID,
    RunningEmulator,
    assert_spec_422,
    ghg_entry_body,
    locs,
    production_batch_body,
)

pytestmark = pytest.mark.slow


# --- helpers ---------------------------------------------------------------------------------------


def client(emulator: RunningEmulator, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers, timeout=timeout)


@pytest.fixture
def feedstock_type_id(emulator_process: RunningEmulator) -> str:
    return str(emulator_process.admin.provision_feedstock_type("Forestry residues", "feedstock-1")["id"])


# --- auth, validation, routes ---------------------------------------------------------------------


def test_missing_or_wrong_credentials_get_401_and_are_never_logged(emulator_process: RunningEmulator) -> None:
    url = emulator_process.base_url + "/production_batches"
    good = emulator_process.auth_headers
    attempts = [
        {},
        {"X-Client-Secret": good["X-Client-Secret"]},
        {"Authorization": good["Authorization"]},
        {**good, "Authorization": "Bearer not-the-token"},
        {**good, "X-Client-Secret": "not-the-secret"},
        {**good, "Authorization": good["Authorization"].replace("Bearer", "Basic")},
    ]
    for headers in attempts:
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert isinstance(response.json()["detail"], str)
    assert httpx.get(url, headers=good).status_code == 200

    assert emulator_process.stop() == 0  # SIGTERM stops it cleanly
    assert emulator_process.log_path is not None
    log = emulator_process.log_path.read_text()
    assert "GET /mrv/v0/production_batches -> 401" in log
    for secret in Settings().secret_values:
        assert secret not in log


def test_unknown_routes_are_404_with_a_json_body(emulator_process: RunningEmulator) -> None:
    with client(emulator_process) as api:
        for path in ("/removals", "/production_batches/ptb_1DEMO000000000000/extra", "/nothing"):
            response = api.get(path)
            assert response.status_code == 404
            assert response.json() == {"detail": "Not Found"}
        assert httpx.get(emulator_process.base_url.removesuffix("/mrv/v0") + "/elsewhere").status_code == 404


def test_a_bad_body_gets_422_in_the_spec_format(
    emulator_process: RunningEmulator, feedstock_type_id: str
) -> None:
    with client(emulator_process) as api:
        body = production_batch_body(feedstock_type_id, "pr-1")
        del body["mass"]
        body["kind"] = "charcoal"
        detail = assert_spec_422(api.post("/production_batches", json=body))
        assert sorted(locs(detail)) == [["body", "kind"], ["body", "mass"]]
        assert {item["type"] for item in detail} == {"missing", "literal_error"}

        detail = assert_spec_422(api.post("/production_batches", content=b"{not json"))
        assert detail[0]["type"] == "json_invalid" and detail[0]["loc"][0] == "body"

        location = {"project_id": PROJECT_ID, "name": "Field", "latitude": 91, "longitude": 5}
        detail = assert_spec_422(api.post(f"/projects/{PROJECT_ID}/storage_locations", json=location))
        assert locs(detail) == [["body", "latitude"]]

        assert_spec_422(api.get("/production_batches/ptb_short"))  # path IDs are 20..37 characters
        assert api.get("/production_batches").json()["total_count"] == 0


def test_first_over_50_is_422(emulator_process: RunningEmulator) -> None:
    with client(emulator_process) as api:
        detail = assert_spec_422(api.get("/production_batches", params={"first": 51}))
        assert locs(detail) == [["query", "first"]]
        assert_spec_422(api.get("/ghg_entries", params={"first": 0}))
        assert_spec_422(api.get("/ghg_entries", params={"after": "not-a-cursor"}))
        assert api.get("/production_batches", params={"first": 50}).status_code == 200


def test_120_production_batches_page_back_completely_each_once(
    emulator_process: RunningEmulator, feedstock_type_id: str
) -> None:
    with client(emulator_process) as api:
        created = [
            api.post("/production_batches", json=production_batch_body(feedstock_type_id, f"pr-{n}")).json()[
                "id"
            ]
            for n in range(120)
        ]
        default_page = api.get("/production_batches").json()
        assert len(default_page["nodes"]) == 10 and default_page["total_count"] == 120

        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"first": 50} | ({"after": after} if after else {})
            page = api.get("/production_batches", params=params).json()
            pages += 1
            assert page["total_count"] == 120
            assert page["page_info"]["has_previous_page"] == (after is not None)
            seen += [node["id"] for node in page["nodes"]]
            if not page["page_info"]["has_next_page"]:
                break
            after = page["page_info"]["end_cursor"]
        assert pages == 3
        assert seen == created  # creation order, each exactly once


def test_references_are_checked(emulator_process: RunningEmulator, feedstock_type_id: str) -> None:
    unknown_ftt, unknown_ptb, unknown_slc = (
        "ftt_1UNKNOWN00000000",
        "ptb_1UNKNOWN00000000",
        "slc_1UNKNOWN00000000",
    )
    with client(emulator_process) as api:
        body = production_batch_body(feedstock_type_id, "pr-1", facility_id="fcl_1UNKNOWN00000000")
        body["feedstock_type_ids"] = [feedstock_type_id, unknown_ftt]
        detail = assert_spec_422(api.post("/production_batches", json=body))
        assert locs(detail) == [["body", "facility_id"], ["body", "feedstock_type_ids", 1]]
        assert "fcl_1UNKNOWN00000000" in detail[0]["msg"] and unknown_ftt in detail[1]["msg"]

        detail = assert_spec_422(
            api.post(
                "/projects/prj_1UNKNOWN00000000/storage_locations",
                json={"project_id": "prj_1UNKNOWN00000000", "name": "F", "latitude": 1, "longitude": 2},
            )
        )
        assert locs(detail) == [["path", "project_id"]]

        application = {
            "project_id": PROJECT_ID,
            "storage_site_id": unknown_slc,
            "production_batch_id": unknown_ptb,
            "application_date": "2026-03-05",
            "average_application_rate": {"magnitude": 5, "unit": "t/ha"},
            "truck_mass_on_arrival": {"magnitude": 20, "unit": "t"},
            "truck_mass_on_departure": {"magnitude": 8, "unit": "t"},
            "supplier_reference_id": "app-1",
        }
        detail = assert_spec_422(api.post("/biochar_applications", json=application))
        assert locs(detail) == [["body", "storage_site_id"], ["body", "production_batch_id"]]

        entry = ghg_entry_body("cb-1")
        entry["ghg_entry_template_id"] = "rvt_1UNKNOWN00000000"
        detail = assert_spec_422(api.post("/ghg_entries", json=entry))
        assert locs(detail) == [["body", "ghg_entry_template_id"]]

        entry = ghg_entry_body(
            "cb-1", components=[{"ghg_entry_template_component_id": "rtc_1UNKNOWN00000000", "inputs": []}]
        )
        detail = assert_spec_422(api.post("/ghg_entries", json=entry))
        assert locs(detail) == [
            ["body", "ghg_entry_template_components", 0, "ghg_entry_template_component_id"]
        ]

        detail = assert_spec_422(
            api.post("/ghg_statements", json={"project_id": "prj_1UNKNOWN00000000", "end_on": "2026-03-31"})
        )
        assert locs(detail) == [["body", "project_id"]]
        assert api.get("/ghg_entries/rmv_1UNKNOWN00000000").status_code == 404

        stats = emulator_process.admin.stats()
        assert stats["requests"]["creates_succeeded"]["total"] == 0
        assert stats["objects"]["production_batches"] == 0


def test_ghg_statement_lifecycle_through_the_admin_route(emulator_process: RunningEmulator) -> None:
    admin = emulator_process.admin
    with client(emulator_process) as api:
        entry = api.post("/ghg_entries", json=ghg_entry_body("cb-1")).json()
        later = api.post("/ghg_entries", json=ghg_entry_body("cb-2", completed_on="2026-04-30")).json()
        assert entry["ghg_statement_id"] is None

        statement = api.post(
            "/ghg_statements", json={"project_id": PROJECT_ID, "end_on": "2026-03-31"}
        ).json()
        assert statement["status"] == "DRAFT" and statement["ghg_entry_ids"] == [entry["id"]]
        assert statement["reporting_period_end_at"] == "2026-03-31" and statement["submitted_at"] is None
        assert api.get(f"/ghg_entries/{entry['id']}").json()["ghg_statement_id"] == statement["id"]
        assert_spec_422(api.delete(f"/ghg_entries/{entry['id']}"))  # no longer a draft
        assert api.delete(f"/ghg_entries/{later['id']}").status_code == 204
        assert api.get(f"/ghg_entries/{later['id']}").status_code == 404

        submit = {"ghg_statement_report_url": "https://reports.example/ggs.pdf"}
        submitted = api.post(f"/ghg_statements/{statement['id']}/submit", json=submit).json()
        assert submitted["status"] == "AWAITING_VERIFICATION" and submitted["submitted_at"]
        assert_spec_422(
            api.post(f"/ghg_statements/{statement['id']}/submit", json=submit)
        )  # already submitted

        failed = admin.set_statement_status(statement["id"], "FAILED_VERIFICATION", verifier="Verifier A")
        assert failed["status"] == "FAILED_VERIFICATION" and failed["verifier"] == "Verifier A"
        detail = assert_spec_422(api.post(f"/ghg_statements/{statement['id']}/submit", json=submit))
        assert locs(detail) == [["body", "summary_of_changes"]]  # a resubmission must say what changed
        resubmitted = api.post(
            f"/ghg_statements/{statement['id']}/submit", json={**submit, "summary_of_changes": "Fixed masses"}
        ).json()
        assert resubmitted["status"] == "AWAITING_VERIFICATION"

        assert admin.set_statement_status(statement["id"], "VERIFIED")["status"] == "VERIFIED"
        issued = admin.set_statement_status(statement["id"], "CREDITS_ISSUED")
        assert issued["status"] == "CREDITS_ISSUED" and issued["credits_issued_at"]
        assert api.get(f"/ghg_statements/{statement['id']}").json() == issued
        with pytest.raises(httpx.HTTPStatusError) as refused:
            admin.set_statement_status(statement["id"], "VERIFIED")
        assert refused.value.response.status_code == 409


def test_stats_count_duplicates_requests_and_creates(
    emulator_process: RunningEmulator, feedstock_type_id: str
) -> None:
    with client(emulator_process) as api:
        for ref in ("pr-1", "pr-1", "pr-1", "pr-2", "pr-3", "pr-3"):
            assert (
                api.post(
                    "/production_batches", json=production_batch_body(feedstock_type_id, ref)
                ).status_code
                == 200
            )
        for ref in ("cb-1", "cb-1"):
            assert api.post("/ghg_entries", json=ghg_entry_body(ref)).status_code == 200
        api.get("/production_batches")
        api.get("/ghg_entries", params={"supplier_reference_id": "cb-1"})
        httpx.get(emulator_process.base_url + "/production_batches")  # 401

    stats = emulator_process.admin.stats()
    assert stats["objects"]["production_batches"] == 6 and stats["objects"]["ghg_entries"] == 2
    duplicates = stats["duplicate_supplier_reference_ids"]
    assert (
        duplicates["production_batches"] == 2 and duplicates["ghg_entries"] == 1 and duplicates["total"] == 3
    )
    requests = stats["requests"]
    assert requests["total"] == 11
    assert requests["by_route"]["POST /production_batches"] == 6
    assert requests["by_route"]["GET /production_batches"] == 2
    assert requests["by_status"] == {"200": 10, "401": 1}
    assert requests["creates_succeeded"] == {"ghg_entries": 2, "production_batches": 6, "total": 8}

    emulator_process.admin.reset()
    stats = emulator_process.admin.stats()
    assert stats["requests"]["total"] == 0 and stats["objects"]["production_batches"] == 0
    assert stats["objects"]["feedstock_types"] == 1  # provisioning stays


# --- faults ---------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(emulator_process: RunningEmulator) -> None:
    emulator_process.admin.set_faults({"rate_limit": {"rate_per_second": 0.01, "burst": 2}})
    with client(emulator_process) as api:
        statuses = [api.get("/production_batches") for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert int(statuses[2].headers["Retry-After"]) >= 1  # integer seconds
        assert isinstance(statuses[2].json()["detail"], str)
    assert emulator_process.admin.stats()["requests"]["faults_injected"]["rate_limit"] == 1


def test_the_rate_limit_charges_requests_in_arrival_order_whatever_their_latency(
    emulator_process: RunningEmulator,
) -> None:
    """A request that arrived first but is held back longer by the emulated latency keeps its token: the
    bucket decides at arrival. (It used to decide after the latency, so the later, faster request took the
    token and the earlier one got a 429 no real rate limit would send.)"""
    emulator_process.admin.set_faults(
        {
            "rate_limit": {"rate_per_second": 10, "burst": 1},
            "latency": {"fixed_ms": 400, "path": "^/production_batches$"},
        }
    )
    statuses: dict[str, int] = {}

    def get(path: str) -> None:
        with client(emulator_process) as api:
            statuses[path] = api.get(path).status_code

    slow = threading.Thread(target=get, args=("/production_batches",))
    slow.start()  # arrives first, answered after 400 ms
    time.sleep(0.15)  # the second arrives 150 ms later: past the 100 ms interval of a 10/s limit
    get("/biochar_applications")
    slow.join()
    assert statuses == {"/production_batches": 200, "/biochar_applications": 200}
    assert emulator_process.admin.stats()["requests"]["faults_injected"]["rate_limit"] == 0


def test_server_errors(emulator_process: RunningEmulator, feedstock_type_id: str) -> None:
    emulator_process.admin.set_faults(
        {"server_errors": {"rate": 1.0, "statuses": [503], "methods": ["POST"]}}
    )
    with client(emulator_process) as api:
        assert (
            api.post("/production_batches", json=production_batch_body(feedstock_type_id, "pr-1")).status_code
            == 503
        )
        assert api.get("/production_batches").json()["total_count"] == 0  # GET is not faulted; nothing stored


def test_a_revoked_credential_is_refused_until_restored(
    emulator_process: RunningEmulator, feedstock_type_id: str
) -> None:
    emulator_process.admin.set_faults({"credentials_revoked": True})
    with client(emulator_process) as api:
        refused = api.post("/production_batches", json=production_batch_body(feedstock_type_id, "pr-1"))
        assert refused.status_code == 401
        assert "Not authenticated" in refused.json()["detail"]
        assert api.get("/production_batches").status_code == 401
        emulator_process.admin.set_faults({"credentials_revoked": False})
        assert api.get("/production_batches").json()["total_count"] == 0  # the refused create stored nothing
    assert emulator_process.admin.stats()["requests"]["faults_injected"]["credentials_revoked"] == 2


def test_connection_reset_stores_nothing(emulator_process: RunningEmulator, feedstock_type_id: str) -> None:
    emulator_process.admin.set_faults({"connection_reset": {"rate": 1.0, "methods": ["POST"]}})
    with client(emulator_process) as api:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            api.post("/production_batches", json=production_batch_body(feedstock_type_id, "pr-1"))
        assert api.get("/production_batches").json()["total_count"] == 0
    assert emulator_process.admin.stats()["requests"]["faults_injected"]["connection_reset"] == 1


def test_lost_response_drop_creates_the_object_but_sends_no_answer(
    emulator_process: RunningEmulator, feedstock_type_id: str
) -> None:
    emulator_process.admin.set_faults({"lost_response": {"rate": 1.0, "mode": "drop", "methods": ["POST"]}})
    with client(emulator_process) as api:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            api.post("/production_batches", json=production_batch_body(feedstock_type_id, "pr-lost"))
        nodes = api.get("/production_batches").json()["nodes"]
        assert [node["supplier_reference_id"] for node in nodes] == ["pr-lost"]
    assert emulator_process.admin.stats()["requests"]["creates_succeeded"]["production_batches"] == 1


def test_lost_response_delay_outlasts_the_client_timeout(emulator_process: RunningEmulator) -> None:
    emulator_process.admin.set_faults(
        {"lost_response": {"rate": 1.0, "mode": "delay", "delay_seconds": 30, "methods": ["POST"]}}
    )
    with client(emulator_process, timeout=0.5) as api, pytest.raises(httpx.ReadTimeout):
        api.post("/ghg_entries", json=ghg_entry_body("cb-lost"))
    with client(emulator_process) as api:
        # The object was stored before the answer was held back.
        found = api.get("/ghg_entries", params={"supplier_reference_id": "cb-lost"}).json()
        assert found["total_count"] == 1


def test_validation_error_rule_rejects_matching_requests(emulator_process: RunningEmulator) -> None:
    emulator_process.admin.set_faults(
        {
            "validation_errors": [
                {
                    "methods": ["POST"],
                    "path": "^/ghg_entries$",
                    "supplier_reference_id": "^bad-",
                    "msg": "Value error, completed_on is before started_on",
                }
            ]
        }
    )
    with client(emulator_process) as api:
        detail = assert_spec_422(api.post("/ghg_entries", json=ghg_entry_body("bad-1")))
        assert detail == [
            {
                "loc": ["body", "supplier_reference_id"],
                "msg": "Value error, completed_on is before started_on",
                "type": "value_error",
                "input": "bad-1",
            }
        ]
        assert api.post("/ghg_entries", json=ghg_entry_body("good-1")).status_code == 200
        refs = [node["supplier_reference_id"] for node in api.get("/ghg_entries").json()["nodes"]]
        assert refs == ["good-1"]


def test_latency_delays_answers(emulator_process: RunningEmulator) -> None:
    emulator_process.admin.set_faults({"latency": {"fixed_ms": 300, "jitter_ms": 0}})
    with client(emulator_process) as api:
        started = time.monotonic()
        assert api.get("/production_batches").status_code == 200
        assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    emulator_process.admin.stats()  # admin routes are never faulted
    assert time.monotonic() - started < 0.3


def _fault_sequence(emulator: RunningEmulator, n: int = 40) -> list[int | str]:
    outcomes: list[int | str] = []
    with client(emulator) as api:
        for _ in range(n):
            try:
                outcomes.append(api.get("/ghg_statements").status_code)
            except httpx.TransportError:
                outcomes.append("reset")
    return outcomes


def test_faults_are_deterministic_with_a_seed(
    emulator_process_factory: Callable[..., RunningEmulator],
) -> None:
    faults = {"server_errors": {"rate": 0.3, "statuses": [503, 500]}, "connection_reset": {"rate": 0.2}}
    first = emulator_process_factory("--faults", json.dumps(faults), "--seed", "7")
    sequence = _fault_sequence(first)
    assert {200, 503, 500, "reset"} <= set(sequence)

    first.admin.set_faults({**faults, "seed": 7})  # replacing the config restarts the sequence
    assert _fault_sequence(first) == sequence
    first.admin.reset()  # so does a reset
    assert _fault_sequence(first) == sequence

    second = emulator_process_factory("--faults", json.dumps(faults), "--seed", "7")
    assert _fault_sequence(second) == sequence
    third = emulator_process_factory("--faults", json.dumps(faults), "--seed", "8")
    assert _fault_sequence(third) != sequence
    assert first.admin.faults()["seed"] == 7


def test_state_file_survives_a_restart(
    emulator_process_factory: Callable[..., RunningEmulator], tmp_path: Path
) -> None:
    state = tmp_path / "emulator.sqlite3"
    before = emulator_process_factory("--state", str(state))
    feedstock_type = before.admin.provision_feedstock_type("Forestry residues", "feedstock-1")
    with client(before) as api:
        batch = api.post(
            "/production_batches", json=production_batch_body(feedstock_type["id"], "pr-1")
        ).json()
        entry = api.post("/ghg_entries", json=ghg_entry_body("cb-1")).json()
        statement = api.post(
            "/ghg_statements", json={"project_id": PROJECT_ID, "end_on": "2026-03-31"}
        ).json()
    assert before.stop() == 0

    after = emulator_process_factory("--state", str(state))
    with client(after) as api:
        assert api.get(f"/production_batches/{batch['id']}").json() == batch
        assert api.get(f"/ghg_entries/{entry['id']}").json()["ghg_statement_id"] == statement["id"]
        assert api.get("/feedstock_types", params={"supplier_reference_id": "feedstock-1"}).json()[
            "nodes"
        ] == [feedstock_type]
        newer = api.post(
            "/production_batches", json=production_batch_body(feedstock_type["id"], "pr-2")
        ).json()
        ids = [node["id"] for node in api.get("/production_batches").json()["nodes"]]
        assert ids == [batch["id"], newer["id"]]  # creation order continues across the restart
