"""Isometric's rules for each local entity: which Certify objects stand for it, in which order, and how
each is built, sent and found again (shared/isometric/README.md).

| local entity    | steps                                                    | how                          |
|-----------------|----------------------------------------------------------|------------------------------|
| facility        | facility                                                 | link (the API cannot create) |
| feedstock_type  | feedstock_type                                           | lookup by reference          |
| production_run  | production_batch                                         | create                       |
| application     | storage_location, biochar_application                    | create (location: PATCH too) |
| credit_batch    | datapoint_applied_biochar_mass,                          | create (datapoints: PATCH    |
|                 | datapoint_organic_carbon_fraction, ghg_entry,            | too), create, create, submit |
|                 | ghg_statement, ghg_statement_submission                  |                              |

A credit batch's GHG entry is filed under the configured template, its monitored inputs pointing at two
datapoints made from the batch's applied applications (ISOMETRIC_TEMPLATE_INPUTS says which input gets
which value): the applied biochar mass (t) and the mass-weighted organic carbon fraction of their runs.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from dmrv_sync.db.models import (
    Application,
    ApplicationStatus,
    CreditBatch,
    CreditBatchStatus,
    ProductionRun,
    ProductionRunStatus,
)
from dmrv_sync.registries.errors import NotFound
from dmrv_sync.registries.isometric.client import REGISTRY_NAME, IsometricClient
from dmrv_sync.registries.isometric.models import (
    CreateBiocharApplicationRequest,
    CreateComponentScalarInput,
    CreateDatapointRequest,
    CreateGhgEntryRequest,
    CreateGhgStatementRequest,
    CreateProductionBatchRequest,
    CreateStorageLocationRequest,
    Datapoint,
    DatapointType,
    GhgEntry,
    GhgEntryTemplateComponentInputs,
    GhgStatementStatus,
    ResubmitGhgStatementRequest,
    ScalarQuantity,
    SubmitGhgStatementRequest,
    UpdateDatapointRequest,
    UpdateStorageLocationRequest,
)
from dmrv_sync.registries.isometric.rules import Limits, validate
from dmrv_sync.settings import DEMO_TEMPLATE_INPUTS, MONITORED_VALUES
from dmrv_sync.sync.adapter import (
    Capability,
    Confirmation,
    EntitySpec,
    Issue,
    MissingExternalId,
    ParentRef,
    RegistryAdapter,
    StepContext,
    StepOutcome,
    StepSpec,
)

logger = logging.getLogger("dmrv_sync.registries.isometric")

CERTIFY_WEB_URL = "https://registry.isometric.com"
NOT_UPDATABLE = (
    "Certify keeps it as it was sent; record the correction in Certify (or delete the draft object there and "
    "run dmrv-sync sync failed to create it again)."
)

ENTITIES: dict[str, EntitySpec] = {
    "facility": EntitySpec("facility", "facility", (StepSpec("facility", Capability.LINK),)),
    "feedstock_type": EntitySpec(
        "feedstock_type", "feedstock_type", (StepSpec("feedstock_type", Capability.LOOKUP),)
    ),
    "production_run": EntitySpec(
        "production_run",
        "production_batch",
        (StepSpec("production_batch", Capability.CREATE, drift_advice=NOT_UPDATABLE),),
        parent_types=("facility", "feedstock_type"),
    ),
    "application": EntitySpec(
        "application",
        "biochar_application",
        (
            StepSpec("storage_location", Capability.CREATE, updatable=True),
            StepSpec("biochar_application", Capability.CREATE, drift_advice=NOT_UPDATABLE),
        ),
        parent_types=("production_run",),
    ),
    "credit_batch": EntitySpec(
        "credit_batch",
        "ghg_statement",
        (
            # The GHG entry's monitored inputs. PATCHed when the batch's applications change, until the
            # statement goes to the verifier (Certify locks them then).
            StepSpec("datapoint_applied_biochar_mass", Capability.CREATE, updatable=True),
            StepSpec("datapoint_organic_carbon_fraction", Capability.CREATE, updatable=True),
            StepSpec(
                "ghg_entry",
                Capability.CREATE,
                drift_advice="A GHG entry in a submitted statement is locked; file a correction in Certify.",
            ),
            StepSpec("ghg_statement", Capability.CREATE),
            StepSpec("ghg_statement_submission", Capability.SUBMIT),
        ),
        parent_types=("application",),
        # A statement takes every draft GHG entry of the project completed by its end date, so periods
        # must be filed in order, earliest end first. Only the statement waits for the one before: a
        # later period's datapoints and entry (completed on its own, later, end) can go ahead, and a
        # submission changes no statement's entries.
        sequential_by="reporting_period_end",
        ordered_step="ghg_statement",
    ),
}

# The registry's statement status → the local credit batch status (confirmation pulls).
STATEMENT_STATUS_TO_LOCAL = {
    GhgStatementStatus.DRAFT: CreditBatchStatus.PENDING,
    GhgStatementStatus.AWAITING_VERIFICATION: CreditBatchStatus.SUBMITTED,
    GhgStatementStatus.VERIFIED: CreditBatchStatus.VERIFIED,
    GhgStatementStatus.CREDITS_ISSUED: CreditBatchStatus.ISSUED,
    GhgStatementStatus.FAILED_VERIFICATION: CreditBatchStatus.FAILED_VERIFICATION,
}


class _DatapointSpec(BaseModel):
    value: str  # one of MONITORED_VALUES
    display_name: str
    type: DatapointType
    unit: str
    description: str


# The datapoint steps of a credit batch, each carrying one monitored value.
DATAPOINTS: dict[str, _DatapointSpec] = {
    "datapoint_applied_biochar_mass": _DatapointSpec(
        value="applied_biochar_mass",
        display_name="Applied biochar mass",
        type=DatapointType.REPORTED,
        unit="t",
        description="Sum of the applied biochar mass of the {n} applied applications in credit batch {batch}.",
    ),
    "datapoint_organic_carbon_fraction": _DatapointSpec(
        value="organic_carbon_fraction",
        display_name="Organic carbon fraction",
        type=DatapointType.DERIVED,
        unit="dimensionless",
        description="Organic carbon fraction of the production runs of the {n} applied "
        "applications in credit batch {batch}, weighted by applied mass.",
    ),
}
STEP_OF_VALUE = {spec.value: step for step, spec in DATAPOINTS.items()}

# External IDs that come from outside the sync (linked by hand, looked up): their ID prefix and the
# payload field that carries them, checked before they are sent.
_LINKED_ID_PREFIX = {
    "facility": ("fcl_", "facility_id"),
    "feedstock_type": ("ftt_", "feedstock_type_ids"),
}
assert set(STEP_OF_VALUE) == set(MONITORED_VALUES)


def monitored_values(batch: CreditBatch) -> tuple[dict[str, float], int]:
    """({monitored value: magnitude}, number of applied applications) of a credit batch."""
    applied = sorted(
        (a for a in batch.applications if a.status == ApplicationStatus.APPLIED), key=lambda a: str(a.id)
    )
    mass_kg = sum(a.applied_mass_kg or 0.0 for a in applied)
    if mass_kg <= 0:
        raise ValueError(f"credit batch {batch.id}: its applied applications have no applied mass")
    missing = sorted(
        {str(a.production_run_id) for a in applied if a.production_run.organic_carbon_fraction is None}
    )
    if missing:
        raise ValueError(f"production run {', '.join(missing)} has no organic_carbon_fraction")
    carbon_kg = sum(
        (a.applied_mass_kg or 0.0) * (a.production_run.organic_carbon_fraction or 0.0) for a in applied
    )
    return {
        "applied_biochar_mass": round(mass_kg / 1000, 6),
        "organic_carbon_fraction": round(carbon_kg / mass_kg, 6),
    }, len(applied)


# Resources that can only be found again by paging through their list (no reference filter).
_PAGED = {
    "production_batch": "production_batches",
    "storage_location": "storage_locations",
    "biochar_application": "biochar_applications",
}


class IsometricAdapter(RegistryAdapter):
    name = REGISTRY_NAME
    entities = ENTITIES
    registry_owned_fields = {
        "credit_batch": frozenset({"status", "submitted_at", "credits_issued_at", "verifier"}),
    }

    def __init__(
        self,
        client: IsometricClient | None,
        *,
        template_id: str,
        template_inputs: Mapping[str, Mapping[str, str]] | None = None,
        project_id: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        # Without a client the adapter still answers what needs no call: readiness, parents, validation.
        self._client = client
        self.project_id = client.project_id if client is not None else (project_id or "")
        self.template_id = template_id
        # {component id: {input key: monitored value}} (settings: ISOMETRIC_TEMPLATE_INPUTS).
        self.template_inputs = {
            component: dict(inputs)
            for component, inputs in (
                DEMO_TEMPLATE_INPUTS if template_inputs is None else template_inputs
            ).items()
        }
        unknown = {v for inputs in self.template_inputs.values() for v in inputs.values()} - set(
            STEP_OF_VALUE
        )
        if unknown:
            raise ValueError(f"template inputs name unknown monitored values: {', '.join(sorted(unknown))}")
        self.limits = limits or Limits()
        # One listing pass settles many unknown outcomes: {resource: (started_at, {reference: id})}.
        self._listings: dict[str, tuple[datetime, dict[str, str]]] = {}
        self._listing_lock = threading.Lock()

    @property
    def client(self) -> IsometricClient:
        if self._client is None:
            raise RuntimeError(
                "this Isometric adapter was built without a client: it cannot call the registry"
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- what and when ------------------------------------------------------------------------------

    def is_ready(self, entity_type: str, entity: Any) -> bool:
        if entity_type == "production_run":
            return bool(entity.status == ProductionRunStatus.COMPLETE)
        if entity_type == "application":
            return bool(entity.status == ApplicationStatus.APPLIED)
        if entity_type == "credit_batch":
            return entity.status in (CreditBatchStatus.PENDING, CreditBatchStatus.FAILED_VERIFICATION)
        return True

    def parents(self, entity_type: str, entity: Any) -> list[ParentRef]:
        if entity_type == "production_run":
            return [ParentRef("facility", str(entity.facility_id))] + [
                ParentRef("feedstock_type", str(f.id)) for f in entity.feedstock_types
            ]
        if entity_type == "application":
            return [ParentRef("production_run", str(entity.production_run_id))]
        if entity_type == "credit_batch":
            return [
                ParentRef("application", str(a.id))
                for a in entity.applications
                if a.status == ApplicationStatus.APPLIED
            ]
        return []

    def validate(self, entity_type: str, entity: Any, today: datetime) -> list[Issue]:
        return validate(entity_type, entity, today, self.limits)

    # -- payloads -----------------------------------------------------------------------------------

    def build_payload(self, ctx: StepContext) -> dict[str, Any] | None:
        step = ctx.step.external_entity_type
        entity = ctx.entity
        if step in ("facility", "feedstock_type"):
            return None
        if step == "production_batch":
            run: ProductionRun = entity
            return CreateProductionBatchRequest(
                facility_id=self._need(ctx, "facility", run.facility_id, "facility"),
                feedstock_type_ids=[
                    self._need(ctx, "feedstock_type", f.id, "feedstock_type")
                    for f in sorted(run.feedstock_types, key=lambda f: str(f.id))
                ],
                supplier_reference_id=ctx.reference,
                kind="biochar",
                started_at=run.started_at,
                ended_at=run.ended_at,
                mass=ScalarQuantity(magnitude=run.biochar_dry_mass_kg, unit="kg"),
            ).to_wire()
        if step == "storage_location":
            application: Application = entity
            return CreateStorageLocationRequest(
                project_id=self.project_id,
                name=application.site_name,
                latitude=application.latitude,
                longitude=application.longitude,
                storage_method=application.storage_method.value if application.storage_method else None,
                supplier_reference_id=ctx.reference,
            ).to_wire()
        if step == "biochar_application":
            application = entity
            tonnes_per_ha = (application.applied_mass_kg or 0) / 1000 / (application.area_ha or 1)
            return CreateBiocharApplicationRequest(
                project_id=self.project_id,
                production_batch_id=self._need(
                    ctx, "production_run", application.production_run_id, "production_batch"
                ),
                storage_site_id=self._need(ctx, "application", application.id, "storage_location"),
                application_date=application.application_date,
                average_application_rate=ScalarQuantity(magnitude=round(tonnes_per_ha, 6), unit="t/ha"),
                truck_mass_on_arrival=ScalarQuantity(
                    magnitude=application.truck_mass_on_arrival_kg, unit="kg"
                ),
                truck_mass_on_departure=ScalarQuantity(
                    magnitude=application.truck_mass_on_departure_kg, unit="kg"
                ),
                supplier_reference_id=ctx.reference,
            ).to_wire()
        batch: CreditBatch = entity
        if step in DATAPOINTS:
            spec = DATAPOINTS[step]
            values, count = monitored_values(batch)
            return CreateDatapointRequest(
                project_id=self.project_id,
                supplier_reference_id=ctx.reference,
                display_name=f"{spec.display_name}, {batch.reporting_period_start} to {batch.reporting_period_end}",
                type=spec.type,
                quantity=ScalarQuantity(magnitude=values[spec.value], unit=spec.unit),
                description=spec.description.format(n=count, batch=batch.id),
                source_ids=[],
            ).to_wire()
        if step == "ghg_entry":
            return CreateGhgEntryRequest(
                project_id=self.project_id,
                supplier_reference_id=ctx.reference,
                started_on=batch.reporting_period_start,
                completed_on=batch.reporting_period_end,
                ghg_entry_template_id=self.template_id,
                ghg_entry_template_components=[
                    GhgEntryTemplateComponentInputs(
                        ghg_entry_template_component_id=component_id,
                        inputs=[
                            CreateComponentScalarInput(
                                input_key=input_key,
                                datapoint_id=self._need(ctx, "credit_batch", batch.id, STEP_OF_VALUE[value]),
                            )
                            for input_key, value in sorted(inputs.items())
                        ],
                    )
                    for component_id, inputs in sorted(self.template_inputs.items())
                ],
            ).to_wire()
        if step == "ghg_statement":
            self._need(ctx, "credit_batch", batch.id, "ghg_entry")  # the statement takes the entry in
            self._earlier_periods_filed(ctx, batch)
            return CreateGhgStatementRequest(
                project_id=self.project_id, end_on=batch.reporting_period_end
            ).to_wire()
        if step == "ghg_statement_submission":
            statement_id = self._need(ctx, "credit_batch", batch.id, "ghg_statement")
            payload: dict[str, Any] = {"ghg_statement_id": statement_id}
            if batch.status == CreditBatchStatus.FAILED_VERIFICATION:
                payload |= ResubmitGhgStatementRequest(
                    ghg_statement_report_url=batch.report_url or "",
                    summary_of_changes=f"Corrected data resubmitted by dmrv-sync for credit batch {batch.id}.",
                ).to_wire()
            else:
                payload |= SubmitGhgStatementRequest(
                    ghg_statement_report_url=batch.report_url or ""
                ).to_wire()
            return payload
        raise KeyError(f"isometric: unknown step {step!r}")

    def _earlier_periods_filed(self, ctx: StepContext, batch: CreditBatch) -> None:
        """Isometric files every draft GHG entry completed by `end_on` into the new statement: an earlier
        period whose entry exists — or may exist: its datapoints are in, so its entry was sent or is about
        to be, and a lost answer leaves no ID here — but whose statement does not must go first, or this
        statement would swallow its entry."""
        others = ctx.session.execute(
            select(CreditBatch.id, CreditBatch.reporting_period_end)
            .where(CreditBatch.id != batch.id, CreditBatch.reporting_period_end <= batch.reporting_period_end)
            .order_by(CreditBatch.reporting_period_end, CreditBatch.id)
        ).all()
        # One query for all of them: a lookup each made a statement of the 178th period cost ~0.3 s.
        known = ctx.external_ids.get_many(
            "credit_batch", [str(i) for i, _ in others], (*DATAPOINTS, "ghg_entry", "ghg_statement")
        )
        for other_id, period_end in others:
            filed = known.get(str(other_id), {})
            entry_under_way = any(step in filed for step in (*DATAPOINTS, "ghg_entry"))
            if entry_under_way and "ghg_statement" not in filed:
                raise MissingExternalId(
                    f"waits for the GHG statement of credit batch {other_id} (period ending "
                    f"{period_end}): Isometric puts every draft GHG entry up to a statement's end "
                    "date into it, so earlier periods are filed first"
                )

    def _need(self, ctx: StepContext, entity_type: str, entity_id: Any, external_type: str) -> str:
        external_id = ctx.external_ids.get(entity_type, str(entity_id), external_type)
        if external_id is None:
            raise MissingExternalId(
                f"needs the {external_type} of {entity_type} {entity_id}, which is not in Isometric yet"
            )
        if external_type in _LINKED_ID_PREFIX:
            # Linked or looked up, so possibly typed by hand: a wrong one must not reach the API.
            prefix, field_name = _LINKED_ID_PREFIX[external_type]
            if not external_id.startswith(prefix):
                raise MissingExternalId(
                    f"{field_name}: the Isometric {external_type} ID stored for {entity_type} {entity_id}, "
                    f"{external_id!r}, is not a {prefix}… ID; nothing was sent. Fix the link (for a facility: "
                    f"`dmrv-sync link facility {entity_id} fcl_... --relink`), then retry (dmrv-sync sync failed)"
                )
        return external_id

    # -- calls --------------------------------------------------------------------------------------

    def execute(self, ctx: StepContext, payload: dict[str, Any] | None) -> StepOutcome:
        step = ctx.step.external_entity_type
        client = self.client
        if step == "facility":
            raise NotFound(
                f"facility {ctx.entity_id} ({ctx.entity.name!r}) is not linked to an Isometric facility. The "
                "Certify API cannot create facilities: create it in the Certify web app, then run "
                f"`dmrv-sync link facility {ctx.entity_id} fcl_...` with its ID",
                registry=self.name,
            )
        if step == "feedstock_type":
            try:
                found = client.get_feedstock_type_by_reference(ctx.reference)
            except NotFound as exc:
                raise NotFound(
                    f"feedstock type {ctx.entity.name!r} is not in Isometric. The Certify API cannot create "
                    f"feedstock types: create it in the Certify web app with supplier reference ID "
                    f"{ctx.reference!r}",
                    registry=self.name,
                    status_code=exc.status_code,
                ) from exc
            return self._outcome(step, found.id)
        assert payload is not None
        if step == "production_batch":
            return self._outcome(
                step, client.create_production_batch(CreateProductionBatchRequest(**payload)).id
            )
        if step == "storage_location":
            return self._outcome(
                step, client.create_storage_location(CreateStorageLocationRequest(**payload)).id
            )
        if step == "biochar_application":
            created = client.create_biochar_application(CreateBiocharApplicationRequest(**payload))
            return self._outcome(step, created.id)
        if step in DATAPOINTS:
            return self._outcome(step, client.create_datapoint(CreateDatapointRequest(**payload)).id)
        if step == "ghg_entry":
            return self._outcome(step, client.create_ghg_entry(CreateGhgEntryRequest(**payload)).id)
        if step == "ghg_statement":
            statement = client.create_ghg_statement(CreateGhgStatementRequest(**payload))
            return self._outcome(step, statement.id, status=str(statement.status))
        if step == "ghg_statement_submission":
            body = {k: v for k, v in payload.items() if k != "ghg_statement_id"}
            request = (
                ResubmitGhgStatementRequest(**body)
                if "summary_of_changes" in body
                else SubmitGhgStatementRequest(**body)
            )
            statement = client.submit_ghg_statement(payload["ghg_statement_id"], request)
            return self._outcome("ghg_statement", statement.id, status=str(statement.status))
        raise KeyError(f"isometric: unknown step {step!r}")

    def reconcile(
        self, ctx: StepContext, payload: dict[str, Any] | None, unsettled_since: datetime
    ) -> StepOutcome | None:
        step = ctx.step.external_entity_type
        if step in ("facility", "feedstock_type"):
            return None  # nothing is ever sent for these: nothing to reconcile
        if step in _PAGED:
            external_id = self._listing(_PAGED[step], unsettled_since).get(ctx.reference)
            return self._outcome(step, external_id, reconciled=True) if external_id else None
        if step == "ghg_entry":
            found = self.client.find_by_supplier_reference("ghg_entries", ctx.reference)
            return (
                self._outcome(step, cast(GhgEntry, found).id, reconciled=True) if found is not None else None
            )
        if step in DATAPOINTS:
            found = self.client.find_by_supplier_reference("datapoints", ctx.reference)
            return (
                self._outcome(step, cast(Datapoint, found).id, reconciled=True) if found is not None else None
            )
        if step == "ghg_statement":
            assert payload is not None
            statement = self.client.find_ghg_statement(date.fromisoformat(payload["end_on"]))
            return self._outcome(step, statement.id, reconciled=True) if statement is not None else None
        if step == "ghg_statement_submission":
            assert payload is not None
            statement = self.client.get_ghg_statement(payload["ghg_statement_id"])
            resubmitting = "summary_of_changes" in payload
            waiting = {GhgStatementStatus.DRAFT} | (
                {GhgStatementStatus.FAILED_VERIFICATION} if resubmitting else set()
            )
            if statement.status in waiting:
                return None
            return self._outcome("ghg_statement", statement.id, status=str(statement.status), reconciled=True)
        return None

    def _listing(self, resource: str, unsettled_since: datetime) -> dict[str, str]:
        """{reference: id} of a paged resource, from a pass that started after `unsettled_since`."""
        from dmrv_sync.db.base import utcnow

        with self._listing_lock:
            cached = self._listings.get(resource)
            if cached is not None and cached[0] > unsettled_since:
                return cached[1]
            started = utcnow()
            index = {
                node["supplier_reference_id"]: node["id"]
                for node in self.client.paginate(_list_path(resource))
                if node.get("supplier_reference_id")
            }
            self._listings[resource] = (started, index)
            return index

    def update(self, ctx: StepContext, external_id: str, payload: dict[str, Any]) -> StepOutcome:
        step = ctx.step.external_entity_type
        if step in DATAPOINTS:
            fields = {k: v for k, v in payload.items() if k in UpdateDatapointRequest.model_fields}
            datapoint = self.client.update_datapoint(external_id, UpdateDatapointRequest(**fields))
            return self._outcome(step, datapoint.id, updated=True)
        if step != "storage_location":
            return super().update(ctx, external_id, payload)
        fields = {k: v for k, v in payload.items() if k not in ("project_id",)}
        updated = self.client.update_storage_location(external_id, UpdateStorageLocationRequest(**fields))
        return self._outcome("storage_location", updated.id, updated=True)

    def fetch(self, ctx: StepContext, external_id: str) -> dict[str, Any] | None:
        getters: dict[str, Callable[[str], BaseModel]] = {
            "production_batch": self.client.get_production_batch,
            "storage_location": self.client.get_storage_location,
            "biochar_application": self.client.get_biochar_application,
            **{step: self.client.get_datapoint for step in DATAPOINTS},
            "ghg_entry": self.client.get_ghg_entry,
            "ghg_statement": self.client.get_ghg_statement,
            "ghg_statement_submission": self.client.get_ghg_statement,
        }
        getter = getters.get(ctx.step.external_entity_type)
        if getter is None:
            return None
        return getter(external_id).model_dump(mode="json")

    # -- confirmation pulls -------------------------------------------------------------------------

    def confirmable(self) -> tuple[str, str] | None:
        return ("credit_batch", "ghg_statement_submission")

    def pull_confirmations(self, session: Session, synced: Mapping[str, str]) -> list[Confirmation]:
        confirmations = []
        for batch_id, statement_id in synced.items():
            batch = session.get(CreditBatch, uuid.UUID(batch_id))
            if batch is None or batch.status == CreditBatchStatus.ISSUED:
                continue  # credits issued: the statement's story is over
            statement = self.client.get_ghg_statement(statement_id)
            try:
                local_status = STATEMENT_STATUS_TO_LOCAL[GhgStatementStatus(statement.status)]
            except ValueError:
                logger.warning(
                    "GHG statement %s has a status this version does not know: %s",
                    statement_id,
                    statement.status,
                )
                continue
            values: dict[str, Any] = {
                "status": local_status,
                "submitted_at": statement.submitted_at,
                "credits_issued_at": statement.credits_issued_at,
                "verifier": statement.verifier,
            }
            error = None
            if local_status == CreditBatchStatus.FAILED_VERIFICATION:
                error = (
                    f"credit_batch {batch_id}: GHG statement {statement_id} failed verification"
                    + (f" by {statement.verifier}" if statement.verifier else "")
                    + ". Read the verifier's findings in Certify, correct the records, then run `dmrv-sync sync "
                    "failed` to resubmit the statement with a summary of changes."
                )
            confirmations.append(
                Confirmation(
                    "credit_batch",
                    batch_id,
                    values,
                    source=f"{self.name}:ghg_statement:{statement_id}",
                    error=error,
                    error_step="ghg_statement_submission" if error else None,
                )
            )
        return confirmations

    def web_url(self, external_entity_type: str, external_id: str) -> str | None:
        kind = "datapoint" if external_entity_type in DATAPOINTS else external_entity_type
        return f"{CERTIFY_WEB_URL}/certify/{kind.replace('_', '-')}s/{external_id}"

    def _outcome(self, step: str, external_id: str, **metadata: Any) -> StepOutcome:
        return StepOutcome(external_id, {"url": self.web_url(step, external_id), **metadata})


def _list_path(resource: str) -> str:
    from dmrv_sync.registries.isometric.client import RESOURCES

    return RESOURCES[resource].list_path
