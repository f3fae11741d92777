"""The Certify API's resources under /mrv/v0: what each route checks, stores and answers.

References are checked as the registry does (unknown IDs are a 422 naming the field); a reused
supplier_reference_id is NOT rejected, as the registry does not reject it either (the stats count it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dmrv_sync.emulator.app import Request, Response, Route, Router, answer, check_id_param, paginate
from dmrv_sync.emulator.config import ProvisionedGhgEntryTemplate, Provisioning
from dmrv_sync.emulator.errors import error_item, not_found, validation_error, validation_errors
from dmrv_sync.emulator.schemas import (
    BiocharApplication,
    CreateBiocharApplicationRequest,
    CreateComponentScalarInput,
    CreateDatapointRequest,
    CreateGhgEntryRequest,
    CreateGhgStatementRequest,
    CreateProductionBatchRequest,
    CreateStorageLocationRequest,
    Datapoint,
    DatapointListQuery,
    FeedstockType,
    GhgEntry,
    GhgEntryTemplate,
    GhgEntryTemplateComponentInputs,
    GhgStatement,
    PaginationQuery,
    PatchDatapointRequest,
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
VERIFIED_STATEMENT_STATES = ("VERIFIED", "CREDITS_ISSUED")
# The units a datapoint may carry for each quantity kind an input asks for, with the factor to the
# kind's base unit (kg for masses, a plain fraction for fractions). A subset of the registry's library.
_FRACTION_UNITS = {"dimensionless": 1.0, "fraction": 1.0, "%": 0.01, "percent": 0.01}
UNITS: dict[str, dict[str, float]] = {
    "mass": {"g": 0.001, "kg": 1.0, "t": 1000.0, "tonne": 1000.0, "Mg": 1000.0},
    "mass_fraction": _FRACTION_UNITS,
    "mass_fraction_dry_basis": _FRACTION_UNITS,
    "dimensionless": _FRACTION_UNITS,
}


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
                Route("GET", "/datapoints", self.list_datapoints),
                Route("POST", "/datapoints", self.create_datapoint),
                Route("GET", "/datapoints/{id}", self.get_datapoint),
                Route("PATCH", "/datapoints/{id}", self.patch_datapoint),
                Route("GET", "/projects/{project_id}/ghg_entry_templates", self.list_ghg_entry_templates),
                Route("GET", "/projects/{project_id}/ghg_entry_templates/{id}", self.get_ghg_entry_template),
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

    # --- datapoints --------------------------------------------------------------------------------

    def list_datapoints(self, request: Request) -> Response:
        query = request.query_model(DatapointListQuery)
        records = self.store.list(
            "datapoints",
            lambda r: (
                (
                    query.supplier_reference_id is None
                    or r["supplier_reference_id"] == query.supplier_reference_id
                )
                and (query.project_id is None or r["project_id"] == query.project_id)
            ),
        )
        return Response(200, paginate([self._with_lock(r) for r in records], query, Datapoint))

    def create_datapoint(self, request: Request) -> Response:
        body = request.body_model(CreateDatapointRequest)
        with self.store.lock:
            problems = []
            unknown_project = self._unknown_project(body.project_id, ["body", "project_id"])
            if unknown_project:
                problems.append(unknown_project)
            # The emulator keeps no sources: any source ID is unknown.
            problems += [
                error_item(["body", "source_ids", n], f"Source {s} does not exist", "value_error", s)
                for n, s in enumerate(body.source_ids)
            ]
            if problems:
                raise validation_errors(problems)
            record = body.model_dump(mode="json")
            # A unitless quantity is stored as "dimensionless": the Datapoint answer requires a unit.
            record["quantity"]["unit"] = body.quantity.unit or "dimensionless"
            record["locked_status"] = "not_locked"
            return self._created("datapoints", Datapoint, record)

    def get_datapoint(self, request: Request) -> Response:
        object_id = check_id_param(request)
        return answer(Datapoint, self._with_lock(self._existing("datapoints", object_id, "Datapoint")))

    def patch_datapoint(self, request: Request) -> Response:
        """Only the fields sent change. A datapoint used by an entry with the verifier (or verified) is
        locked; otherwise the entries using it are recalculated (and their statement shows the new total
        as pending until it is resubmitted)."""
        object_id = check_id_param(request)
        body = request.body_model(PatchDatapointRequest)
        with self.store.lock:
            datapoint = self._existing("datapoints", object_id, "Datapoint")
            users = self._entries_using(object_id)
            for entry in users:
                statement = self._locking_statement(entry)
                if statement is not None and statement["status"] in LOCKED_STATEMENT_STATES:
                    raise validation_error(
                        ["path", "id"],
                        f"Datapoint {object_id} is locked: GHG entry {entry['id']} uses it and its GHG statement "
                        f"{statement['id']} is {statement['status']}; create a new datapoint instead",
                        "value_error",
                        object_id,
                    )
            for name in body.model_fields_set:
                value = getattr(body, name)
                if isinstance(value, Undefined):
                    continue
                datapoint[name] = value if isinstance(value, str | None) else _json(value)
            if "quantity" in body.model_fields_set and not datapoint["quantity"].get("unit"):
                datapoint["quantity"]["unit"] = "dimensionless"
            updated = self.store.update("datapoints", datapoint)
            for entry in users:
                self._calculate(entry)
                self.store.update("ghg_entries", entry)
                self._pend_statement_total(entry)
            return answer(Datapoint, self._with_lock(updated))

    def _entries_using(self, datapoint_id: str) -> list[dict[str, Any]]:
        return self.store.list("ghg_entries", lambda e: datapoint_id in _datapoint_ids(e))

    def _with_lock(self, datapoint: dict[str, Any]) -> dict[str, Any]:
        """The datapoint with its locked status as of now: locked once an entry using it is verified."""
        for entry in self._entries_using(datapoint["id"]):
            statement = self._locking_statement(entry)
            if statement is not None and statement["status"] in VERIFIED_STATEMENT_STATES:
                return {**datapoint, "locked_status": "locked_used_in_verified_removal"}
        return {**datapoint, "locked_status": "not_locked"}

    # --- GHG entry templates (provisioned in the web app) ----------------------------------------

    def _template_answer(self, template: ProvisionedGhgEntryTemplate) -> dict[str, Any]:
        components = [
            {
                "id": c.id,
                "display_name": c.name,
                "description": c.description,
                "blueprint_key": c.blueprint_key,
                "ghg_entry_template_id": template.id,
                "removal_template_component_group_id": template.group_id,
                "inputs": [i.model_dump(mode="json") for i in c.inputs],
            }
            for c in template.components
        ]
        group = {
            "id": template.group_id,
            "key": "default",
            "display_name": template.name,
            "description": f"Components of {template.name}",
            "components": components,
        }
        return {
            "id": template.id,
            "supplier_reference_id": None,
            "display_name": template.name,
            "project_id": template.project_id,
            "groups": [group],
        }

    def list_ghg_entry_templates(self, request: Request) -> Response:
        project_id = self._require_project_param(request)
        query = request.query_model(PaginationQuery)
        records = [
            {**self._template_answer(t), "seq": n}
            for n, t in enumerate(self.provisioning.ghg_entry_templates, start=1)
            if t.project_id == project_id
        ]
        return Response(200, paginate(records, query, GhgEntryTemplate))

    def get_ghg_entry_template(self, request: Request) -> Response:
        project_id = self._require_project_param(request)
        template_id = check_id_param(request)
        template = self.provisioning.template(template_id)
        if template is None or template.project_id != project_id:
            raise not_found(f"GHG entry template {template_id} not found in project {project_id}")
        return answer(GhgEntryTemplate, self._template_answer(template))

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
            record = body.model_dump(mode="json", exclude={"steps", "process_key"})
            record.update(co2e_net_removed_standard_deviation_kg=None, ghg_statement_id=None)
            self._calculate(record)
            return self._created("ghg_entries", GhgEntry, record)

    def _calculate(self, entry: dict[str, Any]) -> None:
        """Set an entry's CO2e from its template and datapoints (config.py: ProvisionedGhgEntryTemplate)."""
        template_id = entry.get("ghg_entry_template_id")
        template = self.provisioning.template(template_id) if template_id else None
        if template is None:
            without_discount, discount = 0.0, 0.0
        else:
            monitored = _monitored_values(
                template, entry.get("ghg_entry_template_components") or [], self.store
            )
            if monitored is None:
                without_discount = template.co2e_net_removed_without_discount_kg
            else:
                without_discount = template.co2e_factor
                for value in monitored:
                    without_discount *= value
            discount = template.discount_fraction
        entry["co2e_net_removed_without_discount_kg"] = round(without_discount, 6)
        entry["co2e_net_removed_kg"] = round(without_discount * (1 - discount), 6)

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
                    continue
                problems += self._input_problems(template, component, index, body.project_id)
        return problems

    def _input_problems(
        self,
        template: ProvisionedGhgEntryTemplate,
        component: GhgEntryTemplateComponentInputs,
        index: int,
        project_id: str,
    ) -> list[dict[str, Any]]:
        """Each input names a key of its component, and each datapoint exists in the project with a unit
        that fits the input's quantity kind."""
        problems = []
        provisioned = template.component(component.ghg_entry_template_component_id)
        assert provisioned is not None
        inputs = {i.input_key: i for i in provisioned.inputs}
        for position, given in enumerate(component.inputs):
            loc: list[str | int] = ["body", "ghg_entry_template_components", index, "inputs", position]
            spec_input = inputs.get(given.input_key)
            if spec_input is None:
                problems.append(
                    error_item(
                        [*loc, "input_key"],
                        f"Input {given.input_key!r} is not an input of component {provisioned.id} "
                        f"(its inputs: {', '.join(sorted(inputs)) or 'none'})",
                        "value_error",
                        given.input_key,
                    )
                )
                continue
            if isinstance(given, CreateComponentScalarInput):
                ids: list[tuple[list[str | int], str]] = [([*loc, "datapoint_id"], given.datapoint_id)]
            else:
                ids = [([*loc, "datapoint_ids", n], d) for n, d in enumerate(given.datapoint_ids)]
            for id_loc, datapoint_id in ids:
                datapoint = self.store.get("datapoints", datapoint_id)
                if datapoint is None or datapoint["project_id"] != project_id:
                    problems.append(
                        error_item(
                            id_loc,
                            f"Datapoint {datapoint_id} does not exist in project {project_id}",
                            "value_error",
                            datapoint_id,
                        )
                    )
                elif datapoint["quantity"]["unit"] not in UNITS[spec_input.quantity_kind]:
                    problems.append(
                        error_item(
                            id_loc,
                            f"Datapoint {datapoint_id} is in {datapoint['quantity']['unit']!r}, which is not a "
                            f"unit of {spec_input.quantity_kind} (input {given.input_key!r})",
                            "value_error",
                            datapoint_id,
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
            self._pend_statement_total(updated)
            return answer(GhgEntry, updated)

    def _pend_statement_total(self, entry: dict[str, Any]) -> None:
        """The entry was recalculated; its statement shows the new total until resubmitted."""
        statement = self._locking_statement(entry)
        if statement is None:
            return
        entries = self.store.list("ghg_entries", lambda r: r["ghg_statement_id"] == statement["id"])
        statement["pending_total_co2e_removed_kg"] = sum(e["co2e_net_removed_kg"] for e in entries)
        self.store.update("ghg_statements", statement)

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


def _json(value: Any) -> Any:
    """A request model's value as stored JSON."""
    if isinstance(value, list):
        return [_json(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else value


def _datapoint_ids(entry: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for component in entry.get("ghg_entry_template_components") or []:
        for given in component.get("inputs", []):
            if given.get("datapoint_id"):
                ids.add(given["datapoint_id"])
            ids.update(given.get("datapoint_ids") or [])
    return ids


def _monitored_values(
    template: ProvisionedGhgEntryTemplate, components: list[dict[str, Any]], store: Store
) -> list[float] | None:
    """The value (in base units) of every monitored input of the template, as the entry supplies them
    (a list input counts its datapoints' sum); None when one is missing."""
    supplied: dict[tuple[str, str], float] = {}
    for component in components:
        for given in component.get("inputs", []):
            ids = (
                [given["datapoint_id"]]
                if given.get("datapoint_id")
                else list(given.get("datapoint_ids") or [])
            )
            total = 0.0
            for datapoint_id in ids:
                datapoint = store.get("datapoints", datapoint_id)
                if datapoint is None:
                    return None
                quantity = datapoint["quantity"]
                total += quantity["magnitude"] * _unit_factor(quantity["unit"])
            supplied[(component["ghg_entry_template_component_id"], given["input_key"])] = total
    values = []
    for provisioned in template.components:
        for spec_input in provisioned.inputs:
            if spec_input.type != "monitored":
                continue
            value = supplied.get((provisioned.id, spec_input.input_key))
            if value is None:
                return None
            values.append(value)
    return values or None


def _unit_factor(unit: str) -> float:
    for units in UNITS.values():
        if unit in units:
            return units[unit]
    return 1.0
