"""The Certify API's resources under /mrv/v0: what each route checks, stores and answers.

References are checked as the registry does (unknown IDs are a 422 naming the field); a reused
supplier_reference_id is NOT rejected, as the registry does not reject it either (the stats count it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dmrv_sync.emulator.app import Request, Response, Route, Router, answer, check_id_param, paginate
from dmrv_sync.emulator.config import Provisioning
from dmrv_sync.emulator.errors import error_item, not_found, validation_error, validation_errors
from dmrv_sync.emulator.schemas import (
    BiocharApplication,
    CreateBiocharApplicationRequest,
    CreateGhgEntryRequest,
    CreateGhgStatementRequest,
    CreateProductionBatchRequest,
    CreateStorageLocationRequest,
    FeedstockType,
    GhgEntry,
    GhgStatement,
    PaginationQuery,
    PatchGhgEntryRequest,
    PatchStorageLocationRequest,
    ProductionBatch,
    ResubmitGhgStatementRequest,
    StorageLocation,
    SubmitGhgStatementRequest,
    Undefined,
)
from dmrv_sync.emulator.stats import RequestCounters
from dmrv_sync.emulator.store import Store

# Fields renamed on 2026-06-04. A client still sending them would otherwise have them silently
# ignored (unknown fields are), so the emulator names the new field instead.
RENAMED_FIELDS = {
    "removal_template_id": "ghg_entry_template_id",
    "removal_template_components": "ghg_entry_template_components",
}
# A statement in these states is with the verifier or done: its GHG entries are locked.
LOCKED_STATEMENT_STATES = ("AWAITING_VERIFICATION", "VERIFIED", "CREDITS_ISSUED")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


class CertifyApi:
    def __init__(self, store: Store, provisioning: Provisioning, counters: RequestCounters) -> None:
        self.store = store
        self.provisioning = provisioning
        self.counters = counters
        self.router = Router(
            [
                Route("GET", "/feedstock_types", self.list_feedstock_types),
                Route("GET", "/production_batches", self.list_production_batches),
                Route("POST", "/production_batches", self.create_production_batch),
                Route("GET", "/production_batches/{id}", self.get_production_batch),
                Route("DELETE", "/production_batches/{id}", self.delete_production_batch),
                Route("GET", "/projects/{project_id}/storage_locations", self.list_storage_locations),
                Route("POST", "/projects/{project_id}/storage_locations", self.create_storage_location),
                Route("GET", "/projects/{project_id}/storage_locations/{id}", self.get_storage_location),
                Route("PATCH", "/projects/{project_id}/storage_locations/{id}", self.patch_storage_location),
                Route(
                    "DELETE", "/projects/{project_id}/storage_locations/{id}", self.delete_storage_location
                ),
                Route("GET", "/biochar_applications", self.list_biochar_applications),
                Route("POST", "/biochar_applications", self.create_biochar_application),
                Route("GET", "/biochar_applications/{id}", self.get_biochar_application),
                Route("DELETE", "/biochar_applications/{id}", self.delete_biochar_application),
                Route("GET", "/ghg_entries", self.list_ghg_entries),
                Route("POST", "/ghg_entries", self.create_ghg_entry),
                Route("GET", "/ghg_entries/{id}", self.get_ghg_entry),
                Route("PATCH", "/ghg_entries/{id}", self.patch_ghg_entry),
                Route("DELETE", "/ghg_entries/{id}", self.delete_ghg_entry),
                Route("GET", "/ghg_statements", self.list_ghg_statements),
                Route("POST", "/ghg_statements", self.create_ghg_statement),
                Route("GET", "/ghg_statements/{id}", self.get_ghg_statement),
                Route("POST", "/ghg_statements/{id}/submit", self.submit_ghg_statement),
            ]
        )

    # --- shared checks ---------------------------------------------------------------------------

    def _created(self, resource: str, model: type[Any], record: dict[str, Any]) -> Response:
        stored = self.store.insert(resource, record)
        self.counters.record_create(resource)
        return answer(model, stored)

    def _existing(self, resource: str, object_id: str, what: str) -> dict[str, Any]:
        record = self.store.get(resource, object_id)
        if record is None:
            raise not_found(f"{what} {object_id} not found")
        return record

    def _unknown_project(self, project_id: str, loc: list[str | int]) -> dict[str, Any] | None:
        if self.provisioning.project(project_id) is None:
            return error_item(
                loc, f"Project {project_id} does not exist or is not accessible", "value_error", project_id
            )
        return None

    def _require_project_param(self, request: Request) -> str:
        project_id = check_id_param(request, "project_id")
        problem = self._unknown_project(project_id, ["path", "project_id"])
        if problem:
            raise validation_errors([problem])
        return project_id

    # --- feedstock types -------------------------------------------------------------------------

    def list_feedstock_types(self, request: Request) -> Response:
        query = request.query_model(PaginationQuery)
        records = self.store.list(
            "feedstock_types",
            lambda r: (
                query.supplier_reference_id is None
                or r["supplier_reference_id"] == query.supplier_reference_id
            ),
        )
        return Response(200, paginate(records, query, FeedstockType))

    # --- production batches ----------------------------------------------------------------------

    def list_production_batches(self, request: Request) -> Response:
        query = request.query_model(PaginationQuery)
        return Response(200, paginate(self.store.list("production_batches"), query, ProductionBatch))

    def create_production_batch(self, request: Request) -> Response:
        body = request.body_model(CreateProductionBatchRequest)
        with self.store.lock:
            problems = []
            if self.provisioning.facility(body.facility_id) is None:
                problems.append(
                    error_item(
                        ["body", "facility_id"],
                        f"Facility {body.facility_id} does not exist",
                        "value_error",
                        body.facility_id,
                    )
                )
            for index, feedstock_type_id in enumerate(body.feedstock_type_ids):
                if self.store.get("feedstock_types", feedstock_type_id) is None:
                    problems.append(
                        error_item(
                            ["body", "feedstock_type_ids", index],
                            f"Feedstock type {feedstock_type_id} does not exist",
                            "value_error",
                            feedstock_type_id,
                        )
                    )
            if problems:
                raise validation_errors(problems)
            record = body.model_dump(mode="json")
            record["display_name"] = body.display_name or body.supplier_reference_id
            record["uploaded_at"] = utc_now()
            return self._created("production_batches", ProductionBatch, record)

    def get_production_batch(self, request: Request) -> Response:
        object_id = check_id_param(request)
        return answer(ProductionBatch, self._existing("production_batches", object_id, "Production batch"))

    def delete_production_batch(self, request: Request) -> Response:
        object_id = check_id_param(request)
        with self.store.lock:
            self._existing("production_batches", object_id, "Production batch")
            users = self.store.list("biochar_applications", lambda r: r["production_batch_id"] == object_id)
            if users:
                raise validation_error(
                    ["path", "id"],
                    f"Production batch {object_id} is used by biochar application {users[0]['id']}; delete that first",
                    "value_error",
                    object_id,
                )
            self.store.delete("production_batches", object_id)
        return Response(204)

    # --- storage locations -----------------------------------------------------------------------

    def list_storage_locations(self, request: Request) -> Response:
        project_id = self._require_project_param(request)
        query = request.query_model(PaginationQuery)
        records = self.store.list("storage_locations", lambda r: r["project_id"] == project_id)
        return Response(200, paginate(records, query, StorageLocation))

    def create_storage_location(self, request: Request) -> Response:
        project_id = self._require_project_param(request)
        body = request.body_model(CreateStorageLocationRequest)
        if body.project_id != project_id:
            raise validation_error(
                ["body", "project_id"],
                f"project_id {body.project_id} does not match the project in the path ({project_id})",
                "value_error",
                body.project_id,
            )
        record = {
            "name": body.name,
            "project_id": project_id,
            "supplier_id": self.provisioning.supplier_id,
            "latitude": body.latitude,
            "longitude": body.longitude,
            "storage_method": "biochar_field"
            if isinstance(body.storage_method, Undefined)
            else body.storage_method,
            "supplier_reference_id": None
            if isinstance(body.supplier_reference_id, Undefined)
            else body.supplier_reference_id,
        }
        return self._created("storage_locations", StorageLocation, record)

    def _storage_location(self, request: Request) -> dict[str, Any]:
        project_id = self._require_project_param(request)
        object_id = check_id_param(request)
        record = self._existing("storage_locations", object_id, "Storage location")
        if record["project_id"] != project_id:
            raise not_found(f"Storage location {object_id} not found in project {project_id}")
        return record

    def get_storage_location(self, request: Request) -> Response:
        return answer(StorageLocation, self._storage_location(request))

    def patch_storage_location(self, request: Request) -> Response:
        body = request.body_model(PatchStorageLocationRequest)
        with self.store.lock:
            record = self._storage_location(request)
            for name in PatchStorageLocationRequest.model_fields:
                value = getattr(body, name)
                if not isinstance(value, Undefined):
                    record[name] = value
            return answer(StorageLocation, self.store.update("storage_locations", record))

    def delete_storage_location(self, request: Request) -> Response:
        with self.store.lock:
            record = self._storage_location(request)
            users = self.store.list(
                "biochar_applications", lambda r: r["storage_location_id"] == record["id"]
            )
            if users:
                raise validation_error(
                    ["path", "id"],
                    f"Storage location {record['id']} is used by biochar application {users[0]['id']}; delete that first",
                    "value_error",
                    record["id"],
                )
            self.store.delete("storage_locations", record["id"])
        return Response(204)

    # --- biochar applications --------------------------------------------------------------------

    def list_biochar_applications(self, request: Request) -> Response:
        query = request.query_model(PaginationQuery)
        return Response(200, paginate(self.store.list("biochar_applications"), query, BiocharApplication))

    def create_biochar_application(self, request: Request) -> Response:
        body = request.body_model(CreateBiocharApplicationRequest)
        with self.store.lock:
            problems = []
            unknown_project = self._unknown_project(body.project_id, ["body", "project_id"])
            if unknown_project:
                problems.append(unknown_project)
            storage_location = self.store.get("storage_locations", body.storage_site_id)
            if storage_location is None or storage_location["project_id"] != body.project_id:
                problems.append(
                    error_item(
                        ["body", "storage_site_id"],
                        f"Storage location {body.storage_site_id} does not exist in project {body.project_id}",
                        "value_error",
                        body.storage_site_id,
                    )
                )
            if self.store.get("production_batches", body.production_batch_id) is None:
                problems.append(
                    error_item(
                        ["body", "production_batch_id"],
                        f"Production batch {body.production_batch_id} does not exist",
                        "value_error",
                        body.production_batch_id,
                    )
                )
            if problems:
                raise validation_errors(problems)
            record = body.model_dump(mode="json", exclude={"storage_site_id", "source_ids"})
            record.update(storage_location_id=body.storage_site_id, removal_id=None, uploaded_at=utc_now())
            return self._created("biochar_applications", BiocharApplication, record)

    def get_biochar_application(self, request: Request) -> Response:
        object_id = check_id_param(request)
        return answer(
            BiocharApplication, self._existing("biochar_applications", object_id, "Biochar application")
        )

    def delete_biochar_application(self, request: Request) -> Response:
        object_id = check_id_param(request)
        with self.store.lock:
            self._existing("biochar_applications", object_id, "Biochar application")
            self.store.delete("biochar_applications", object_id)
        return Response(204)

    # --- GHG entries -----------------------------------------------------------------------------

    def list_ghg_entries(self, request: Request) -> Response:
        query = request.query_model(PaginationQuery)
        records = self.store.list(
            "ghg_entries",
            lambda r: (
                query.supplier_reference_id is None
                or r["supplier_reference_id"] == query.supplier_reference_id
            ),
        )
        return Response(200, paginate(records, query, GhgEntry))

    def create_ghg_entry(self, request: Request) -> Response:
        payload = request.json_body()
        if isinstance(payload, dict):
            renamed = [
                error_item(
                    ["body", old],
                    f"Renamed to {new} on 2026-06-04 (removals became GHG entries)",
                    "extra_forbidden",
                    payload[old],
                )
                for old, new in RENAMED_FIELDS.items()
                if old in payload
            ]
            if renamed:
                raise validation_errors(renamed)
        body = request.body_model(CreateGhgEntryRequest)
        with self.store.lock:
            problems = self._ghg_entry_reference_problems(body)
            if problems:
                raise validation_errors(problems)
            template = (
                self.provisioning.template(body.ghg_entry_template_id) if body.ghg_entry_template_id else None
            )
            without_discount = template.co2e_net_removed_without_discount_kg if template else 0.0
            discount = template.discount_fraction if template else 0.0
            record = body.model_dump(mode="json", exclude={"steps", "process_key"})
            record.update(
                co2e_net_removed_without_discount_kg=without_discount,
                co2e_net_removed_kg=round(without_discount * (1 - discount), 6),
                co2e_net_removed_standard_deviation_kg=None,
                ghg_statement_id=None,
            )
            return self._created("ghg_entries", GhgEntry, record)

    def _ghg_entry_reference_problems(self, body: CreateGhgEntryRequest) -> list[dict[str, Any]]:
        problems = []
        unknown_project = self._unknown_project(body.project_id, ["body", "project_id"])
        if unknown_project:
            problems.append(unknown_project)
        if body.feedstock_type_id and self.store.get("feedstock_types", body.feedstock_type_id) is None:
            problems.append(
                error_item(
                    ["body", "feedstock_type_id"],
                    f"Feedstock type {body.feedstock_type_id} does not exist",
                    "value_error",
                    body.feedstock_type_id,
                )
            )
        template = None
        if body.ghg_entry_template_id is not None:
            template = self.provisioning.template(body.ghg_entry_template_id)
            if template is None or template.project_id != body.project_id:
                problems.append(
                    error_item(
                        ["body", "ghg_entry_template_id"],
                        f"GHG entry template {body.ghg_entry_template_id} does not exist in project {body.project_id}",
                        "value_error",
                        body.ghg_entry_template_id,
                    )
                )
        elif body.ghg_entry_template_components:
            problems.append(
                error_item(
                    ["body", "ghg_entry_template_components"],
                    "Template components need a ghg_entry_template_id",
                    "value_error",
                    None,
                )
            )
        if template is not None:
            known = {component.id for component in template.components}
            for index, component in enumerate(body.ghg_entry_template_components):
                if component.ghg_entry_template_component_id not in known:
                    problems.append(
                        error_item(
                            [
                                "body",
                                "ghg_entry_template_components",
                                index,
                                "ghg_entry_template_component_id",
                            ],
                            f"Component {component.ghg_entry_template_component_id} is not part of template {template.id}",
                            "value_error",
                            component.ghg_entry_template_component_id,
                        )
                    )
        return problems

    def get_ghg_entry(self, request: Request) -> Response:
        object_id = check_id_param(request)
        return answer(GhgEntry, self._existing("ghg_entries", object_id, "GHG entry"))

    def _locking_statement(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        if entry["ghg_statement_id"] is None:
            return None
        return self.store.get("ghg_statements", entry["ghg_statement_id"])

    def patch_ghg_entry(self, request: Request) -> Response:
        object_id = check_id_param(request)
        body = request.body_model(PatchGhgEntryRequest)
        with self.store.lock:
            entry = self._existing("ghg_entries", object_id, "GHG entry")
            statement = self._locking_statement(entry)
            if statement is not None and statement["status"] in LOCKED_STATEMENT_STATES:
                raise validation_error(
                    ["path", "id"],
                    f"GHG entry {object_id} is locked: its GHG statement {statement['id']} is {statement['status']}",
                    "value_error",
                    object_id,
                )
            if body.started_on is not None:
                entry["started_on"] = body.started_on.isoformat()
            if body.completed_on is not None:
                entry["completed_on"] = body.completed_on.isoformat()
            if not isinstance(body.feedstock_type_id, Undefined):
                if self.store.get("feedstock_types", body.feedstock_type_id) is None:
                    raise validation_error(
                        ["body", "feedstock_type_id"],
                        f"Feedstock type {body.feedstock_type_id} does not exist",
                        "value_error",
                        body.feedstock_type_id,
                    )
                entry["feedstock_type_id"] = body.feedstock_type_id
            updated = self.store.update("ghg_entries", entry)
            if statement is not None:
                # The entry was recalculated; its statement shows the new total until resubmitted.
                entries = self.store.list("ghg_entries", lambda r: r["ghg_statement_id"] == statement["id"])
                statement["pending_total_co2e_removed_kg"] = sum(e["co2e_net_removed_kg"] for e in entries)
                self.store.update("ghg_statements", statement)
            return answer(GhgEntry, updated)

    def delete_ghg_entry(self, request: Request) -> Response:
        object_id = check_id_param(request)
        with self.store.lock:
            entry = self._existing("ghg_entries", object_id, "GHG entry")
            if entry["ghg_statement_id"] is not None:
                raise validation_error(
                    ["path", "id"],
                    f"GHG entry {object_id} is not a draft (it is in GHG statement {entry['ghg_statement_id']});"
                    " only draft GHG entries can be deleted",
                    "value_error",
                    object_id,
                )
            self.store.delete("ghg_entries", object_id)
        return Response(204)

    # --- GHG statements --------------------------------------------------------------------------

    def list_ghg_statements(self, request: Request) -> Response:
        query = request.query_model(PaginationQuery)
        return Response(200, paginate(self.store.list("ghg_statements"), query, GhgStatement))

    def create_ghg_statement(self, request: Request) -> Response:
        """A statement takes every draft GHG entry of the project completed on or before `end_on`."""
        body = request.body_model(CreateGhgStatementRequest)
        with self.store.lock:
            unknown_project = self._unknown_project(body.project_id, ["body", "project_id"])
            if unknown_project:
                raise validation_errors([unknown_project])
            end_on = body.end_on.isoformat()
            entries = self.store.list(
                "ghg_entries",
                lambda r: (
                    r["project_id"] == body.project_id
                    and r["ghg_statement_id"] is None
                    and r["completed_on"] <= end_on
                ),
            )
            if not entries:
                raise validation_error(
                    ["body", "end_on"],
                    f"Project {body.project_id} has no draft GHG entries completed on or before {end_on}",
                    "value_error",
                    end_on,
                )
            record = {
                "project_id": body.project_id,
                "verifier": None,
                "ghg_entry_ids": [e["id"] for e in entries],
                "ghg_statement_report_url": None,
                "status": "DRAFT",
                "reporting_period_start_at": min(e["started_on"] for e in entries),
                "reporting_period_end_at": end_on,
                "submitted_at": None,
                "credits_issued_at": None,
                "pending_total_co2e_removed_kg": None,
                "status_changed_at": utc_now(),
            }
            response = self._created("ghg_statements", GhgStatement, record)
            for entry in entries:
                entry["ghg_statement_id"] = response.body["id"]
                self.store.update("ghg_entries", entry)
            return response

    def get_ghg_statement(self, request: Request) -> Response:
        object_id = check_id_param(request)
        return answer(GhgStatement, self._existing("ghg_statements", object_id, "GHG statement"))

    def submit_ghg_statement(self, request: Request) -> Response:
        """Submit a DRAFT statement, or resubmit a FAILED_VERIFICATION one (which needs summary_of_changes)."""
        object_id = check_id_param(request)
        with self.store.lock:
            statement = self._existing("ghg_statements", object_id, "GHG statement")
            if statement["status"] == "FAILED_VERIFICATION":
                resubmit = request.body_model(ResubmitGhgStatementRequest)
                statement["summary_of_changes"] = resubmit.summary_of_changes
                report_url = resubmit.ghg_statement_report_url
            elif statement["status"] == "DRAFT":
                report_url = request.body_model(SubmitGhgStatementRequest).ghg_statement_report_url
            else:
                raise validation_error(
                    ["path", "id"],
                    f"GHG statement {object_id} is {statement['status']}; only DRAFT or FAILED_VERIFICATION"
                    " statements can be submitted",
                    "value_error",
                    object_id,
                )
            now = utc_now()
            statement.update(
                status="AWAITING_VERIFICATION",
                ghg_statement_report_url=report_url,
                submitted_at=now,
                status_changed_at=now,
                pending_total_co2e_removed_kg=None,
            )
            return answer(GhgStatement, self.store.update("ghg_statements", statement))
