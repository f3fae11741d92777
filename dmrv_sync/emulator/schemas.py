"""Wire models of the Certify API, one per request/response schema, named after the spec's schemas.

The spec predates the 2026-06 rename of removals to GHG entries (isometric/README.md); these models use
today's names, and each renamed model says which spec schema it stands for, so a diff against the spec
stays easy to read. Request models ignore unknown fields, as the registry's do; response models are
built from the emulator's stored records and keep only the spec's fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

IsometricId = Annotated[str, StringConstraints(min_length=20, max_length=37)]
SupplierReferenceId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]

ProductionBatchKind = Literal["biochar"]
StorageMethod = Literal[
    "biochar_field",
    "biochar_landfill",
    "biomass_injection_well",
    "biomass_subsurface",
    "saline_aquifer",
    "in_situ_mineralization",
]
DatapointType = Literal["CONSTANT", "STANDARD_PUBLISHED_VALUE", "REPORTED", "ASSUMPTION", "DERIVED"]
DatapointLockedStatus = Literal["not_locked", "locked_used_in_verified_removal"]  # the two the emulator sets
ComponentInputType = Literal["fixed", "monitored"]
# The spec's QuantityKindType values the emulator's unit table knows (handlers.py: UNITS).
QuantityKind = Literal["mass", "mass_fraction", "mass_fraction_dry_basis", "dimensionless"]
GhgStatementStatus = Literal[
    "DRAFT", "AWAITING_VERIFICATION", "VERIFIED", "CREDITS_ISSUED", "FAILED_VERIFICATION"
]


class Undefined(BaseModel):
    """The spec's marker for "not sent" on optional writes. Clients simply omit the field; `null` is
    not the same thing and is rejected where the spec does not allow it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    typename: Literal["Undefined"] = Field(default="Undefined", alias="__typename")


class ScalarQuantity(BaseModel):
    magnitude: float
    unit: Annotated[str, StringConstraints(min_length=1)]
    standard_deviation: float | None = None


class PageInfo(BaseModel):
    has_previous_page: bool
    start_cursor: str | None
    has_next_page: bool
    end_cursor: str | None


NodeT = TypeVar("NodeT", bound=BaseModel)


class PaginatedListResource(BaseModel, Generic[NodeT]):
    """The spec's `PaginatedListResource_<Node>_` schemas."""

    nodes: list[NodeT]
    total_count: int
    page_info: PageInfo


class PaginationQuery(BaseModel):
    """The Relay query parameters every list route takes, plus the `supplier_reference_id` filter
    that some routes have (routes without it ignore it, as the registry ignores unknown parameters)."""

    first: int = Field(default=10, gt=0, le=50)
    after: Annotated[str, StringConstraints(min_length=1)] | None = None
    last: int = Field(default=10, gt=0, le=50)
    before: Annotated[str, StringConstraints(min_length=1)] | None = None
    supplier_reference_id: SupplierReferenceId | None = None


# --- feedstock types (read-only in the API: created in the Certify web app) ---------------------------


class FeedstockType(BaseModel):
    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None
    name: str


# --- production batches ------------------------------------------------------------------------------


class CreateProductionBatchRequest(BaseModel):
    facility_id: IsometricId
    feedstock_type_ids: list[IsometricId]
    supplier_reference_id: SupplierReferenceId
    kind: ProductionBatchKind
    started_at: dt.datetime
    ended_at: dt.datetime
    mass: ScalarQuantity
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None


class ProductionBatch(BaseModel):
    id: IsometricId
    facility_id: IsometricId
    feedstock_type_ids: list[IsometricId]
    supplier_reference_id: SupplierReferenceId | None
    kind: ProductionBatchKind
    started_at: dt.datetime
    ended_at: dt.datetime
    uploaded_at: dt.datetime
    display_name: str
    mass: ScalarQuantity


# --- storage locations -------------------------------------------------------------------------------


class CreateStorageLocationRequest(BaseModel):
    project_id: IsometricId
    # The request schema leaves `name` unbounded but the StorageLocation response caps it at 100:
    # rejecting longer names here keeps every answer valid and makes the problem visible to the client.
    name: Annotated[str, StringConstraints(max_length=100)]
    latitude: Latitude
    longitude: Longitude
    storage_method: StorageMethod | Undefined = Field(default_factory=Undefined)
    supplier_reference_id: SupplierReferenceId | Undefined = Field(default_factory=Undefined)


class PatchStorageLocationRequest(BaseModel):
    name: Annotated[str, StringConstraints(max_length=100)] | Undefined = Field(default_factory=Undefined)
    latitude: Latitude | Undefined = Field(default_factory=Undefined)
    longitude: Longitude | Undefined = Field(default_factory=Undefined)
    storage_method: StorageMethod | Undefined = Field(default_factory=Undefined)
    supplier_reference_id: SupplierReferenceId | Undefined = Field(default_factory=Undefined)


class StorageLocation(BaseModel):
    id: IsometricId
    name: Annotated[str, StringConstraints(max_length=100)]
    project_id: IsometricId
    supplier_id: IsometricId
    storage_method: StorageMethod
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    supplier_reference_id: SupplierReferenceId | None = None


# --- biochar applications ----------------------------------------------------------------------------


class CreateBiocharApplicationRequest(BaseModel):
    project_id: IsometricId
    storage_site_id: IsometricId
    production_batch_id: IsometricId
    average_application_rate: ScalarQuantity
    application_date: dt.date
    truck_mass_on_arrival: ScalarQuantity
    truck_mass_on_departure: ScalarQuantity
    supplier_reference_id: SupplierReferenceId
    source_ids: list[IsometricId] = Field(default_factory=list)


class BiocharApplication(BaseModel):
    id: IsometricId
    storage_location_id: IsometricId
    production_batch_id: IsometricId
    # Not in the README's rename table, so the field keeps its pre-rename name.
    removal_id: IsometricId | None
    supplier_reference_id: SupplierReferenceId | None
    application_date: dt.date
    uploaded_at: dt.datetime
    truck_mass_on_arrival: ScalarQuantity
    truck_mass_on_departure: ScalarQuantity
    average_application_rate: ScalarQuantity


# --- datapoints ----------------------------------------------------------------------------------------


class DatapointQuantityInput(BaseModel):
    magnitude: float
    unit: str | None
    standard_deviation: float | None = None


class CreateDatapointRequest(BaseModel):
    supplier_reference_id: SupplierReferenceId
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    type: DatapointType
    quantity: DatapointQuantityInput
    description: str
    source_ids: list[IsometricId]
    project_id: IsometricId
    measured_at: dt.datetime | None = None
    uncertainty_justification: str | None = None


class PatchDatapointRequest(BaseModel):
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | Undefined = Field(
        default_factory=Undefined
    )
    type: DatapointType | Undefined = Field(default_factory=Undefined)
    quantity: DatapointQuantityInput | Undefined = Field(default_factory=Undefined)
    description: str | Undefined = Field(default_factory=Undefined)
    source_ids: list[IsometricId] | Undefined = Field(default_factory=Undefined)
    uncertainty_justification: str | Undefined = Field(default_factory=Undefined)


class DatapointListQuery(PaginationQuery):
    project_id: IsometricId | None = None


class Datapoint(BaseModel):
    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None
    display_name: str
    type: DatapointType
    quantity: ScalarQuantity
    description: str | None
    source_ids: list[IsometricId]
    measured_at: dt.datetime | None
    project_id: IsometricId | None
    locked_status: DatapointLockedStatus
    uncertainty_justification: str | None = None


# --- GHG entry templates (the spec's removal templates; provisioned in the web app) --------------------


class GhgEntryTemplateComponentInput(BaseModel):
    """Spec: RemovalTemplateComponentInput."""

    input_key: str
    datapoint_id: IsometricId | None
    display_name: str
    type: ComponentInputType
    quantity_kind: QuantityKind


class GhgEntryTemplateComponent(BaseModel):
    """Spec: RemovalTemplateComponent."""

    id: IsometricId
    display_name: str
    description: str | None
    blueprint_key: str
    ghg_entry_template_id: IsometricId  # spec: removal_template_id
    # Not in the README's rename table, so the field keeps its pre-rename name.
    removal_template_component_group_id: IsometricId
    inputs: list[GhgEntryTemplateComponentInput]


class GhgEntryTemplateComponentGroup(BaseModel):
    """Spec: RemovalTemplateComponentGroup."""

    id: IsometricId
    key: str
    display_name: str
    description: str
    components: list[GhgEntryTemplateComponent]


class GhgEntryTemplate(BaseModel):
    """Spec: RemovalTemplate."""

    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None
    display_name: str
    project_id: IsometricId
    groups: list[GhgEntryTemplateComponentGroup]


# --- GHG entries (the spec's removals) ---------------------------------------------------------------


class CreateComponentListInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    typename: Literal["CreateComponentListInput"] = Field(
        default="CreateComponentListInput", alias="__typename"
    )
    input_key: Annotated[str, StringConstraints(max_length=100)]
    datapoint_ids: list[IsometricId]


class CreateComponentScalarInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    typename: Literal["CreateComponentScalarInput"] = Field(
        default="CreateComponentScalarInput", alias="__typename"
    )
    input_key: Annotated[str, StringConstraints(max_length=100)]
    datapoint_id: IsometricId


class GhgEntryTemplateComponentInputs(BaseModel):
    """Spec: RemovalTemplateComponentInputs."""

    ghg_entry_template_component_id: IsometricId
    inputs: list[CreateComponentListInput | CreateComponentScalarInput]


class CreateRemovalComponentLink(BaseModel):
    component_id: IsometricId
    attribution_factor_datapoint_id: IsometricId | None = None


class CreateRemovalStep(BaseModel):
    """Deprecated in the spec; accepted and ignored."""

    process_step_key: str
    components: list[CreateRemovalComponentLink]


class CreateGhgEntryRequest(BaseModel):
    """Spec: CreateRemovalRequest."""

    supplier_reference_id: SupplierReferenceId
    started_on: dt.date
    completed_on: dt.date
    project_id: IsometricId
    feedstock_type_id: IsometricId | None = None
    ghg_entry_template_id: IsometricId | None = None
    ghg_entry_template_components: list[GhgEntryTemplateComponentInputs] = Field(default_factory=list)
    process_key: str | None = None
    steps: list[CreateRemovalStep] | None = None


class PatchGhgEntryRequest(BaseModel):
    """Spec: PatchRemovalRequest (its deprecated component fields are ignored)."""

    started_on: dt.date | None = None
    completed_on: dt.date | None = None
    feedstock_type_id: IsometricId | Undefined = Field(default_factory=Undefined)


class GhgEntry(BaseModel):
    """Spec: Removal."""

    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None
    started_on: dt.date
    completed_on: dt.date
    co2e_net_removed_kg: float
    co2e_net_removed_without_discount_kg: float
    co2e_net_removed_standard_deviation_kg: float | None
    ghg_statement_id: IsometricId | None
    feedstock_type_id: IsometricId | None


# --- GHG statements ----------------------------------------------------------------------------------


class CreateGhgStatementRequest(BaseModel):
    end_on: dt.date
    project_id: IsometricId


class SubmitGhgStatementRequest(BaseModel):
    ghg_statement_report_url: str


class ResubmitGhgStatementRequest(BaseModel):
    ghg_statement_report_url: str
    summary_of_changes: str


class GhgStatement(BaseModel):
    id: IsometricId
    project_id: IsometricId
    verifier: str | None
    ghg_entry_ids: list[IsometricId]  # spec: removal_ids
    ghg_statement_report_url: str | None
    status: GhgStatementStatus
    reporting_period_start_at: dt.date
    reporting_period_end_at: dt.date
    submitted_at: dt.datetime | None
    credits_issued_at: dt.datetime | None
    pending_total_co2e_removed_kg: float | None
