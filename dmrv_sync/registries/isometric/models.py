"""Wire formats of the Isometric Certify API (v0), one pydantic model per schema the client uses.

Names follow the spec's schema names (`/work/shared/isometric/certify-openapi.json`) with the
2026-06-04 rename applied: removal → GHG entry. So `CreateRemovalRequest` is `CreateGhgEntryRequest`,
`Removal` is `GhgEntry`, `RemovalTemplate` is `GhgEntryTemplate`, `removal_template_id` is
`ghg_entry_template_id`, a statement's `removal_ids` is `ghg_entry_ids`. `UpdateStorageLocationRequest`
and `UpdateDatapointRequest` are the spec's `PatchStorageLocationRequest` and `PatchDatapointRequest`.

Requests forbid unknown fields (a typo fails here, not at the registry) and are serialised with
`to_wire()`: JSON types, and optional fields left out rather than sent as null — the spec types most
optional request fields as "value or Undefined", where null is invalid.

Responses allow unknown fields (Isometric adds properties without notice) and require only what the
sync core reads (`id`, `supplier_reference_id`, statement `status`, ...). A create that succeeded must
not be lost to a parsing nit on some other field; the contract tests check the full response shapes.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body: JSON types, optional fields omitted when unset."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- shared shapes -------------------------------------------------------------------------------


class ScalarQuantity(BaseModel):
    """`{"magnitude": 12.5, "unit": "t", "standard_deviation": null}`."""

    model_config = ConfigDict(extra="allow")

    magnitude: float
    unit: str = Field(min_length=1)
    standard_deviation: float | None = None


class PageInfo(_Response):
    has_next_page: bool
    end_cursor: str | None = None
    has_previous_page: bool = False
    start_cursor: str | None = None


T = TypeVar("T")


class PaginatedList(_Response, Generic[T]):
    """The spec's `PaginatedListResource[X]`: one page of a Relay-style list."""

    nodes: list[T]
    page_info: PageInfo
    total_count: int | None = None


class StorageMethod(StrEnum):
    BIOCHAR_FIELD = "biochar_field"
    BIOCHAR_LANDFILL = "biochar_landfill"
    BIOMASS_INJECTION_WELL = "biomass_injection_well"
    BIOMASS_SUBSURFACE = "biomass_subsurface"
    SALINE_AQUIFER = "saline_aquifer"
    IN_SITU_MINERALIZATION = "in_situ_mineralization"


class GhgStatementStatus(StrEnum):
    DRAFT = "DRAFT"
    AWAITING_VERIFICATION = "AWAITING_VERIFICATION"
    VERIFIED = "VERIFIED"
    CREDITS_ISSUED = "CREDITS_ISSUED"
    FAILED_VERIFICATION = "FAILED_VERIFICATION"


class DatapointType(StrEnum):
    CONSTANT = "CONSTANT"
    STANDARD_PUBLISHED_VALUE = "STANDARD_PUBLISHED_VALUE"
    REPORTED = "REPORTED"
    ASSUMPTION = "ASSUMPTION"
    DERIVED = "DERIVED"


IsometricId = str  # prefixed: prj_, fcl_, ftt_, ptb_, slc_, bse_, dtp_, rmv_, rvt_, rtc_, ggs_ ...
SupplierReferenceId = str  # 1..100 characters, unique per supplier


# --- feedstock types (read only: created in the web app) -----------------------------------------


class FeedstockType(_Response):
    id: IsometricId
    name: str | None = None
    supplier_reference_id: SupplierReferenceId | None = None


# --- production batches --------------------------------------------------------------------------


class CreateProductionBatchRequest(_Request):
    facility_id: IsometricId
    feedstock_type_ids: list[IsometricId]
    supplier_reference_id: SupplierReferenceId = Field(min_length=1, max_length=100)
    kind: Literal["biochar"] = "biochar"
    started_at: AwareDatetime
    ended_at: AwareDatetime
    mass: ScalarQuantity
    display_name: str | None = Field(default=None, min_length=1, max_length=100)


class ProductionBatch(_Response):
    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None = None
    facility_id: IsometricId | None = None
    feedstock_type_ids: list[IsometricId] = Field(default_factory=list)
    kind: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    uploaded_at: datetime | None = None
    display_name: str | None = None
    mass: ScalarQuantity | None = None


# --- storage locations (under /projects/{project_id}) --------------------------------------------


class CreateStorageLocationRequest(_Request):
    project_id: IsometricId
    name: str = Field(min_length=1, max_length=100)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    storage_method: StorageMethod | None = None
    supplier_reference_id: SupplierReferenceId | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = None


class UpdateStorageLocationRequest(_Request):
    """The spec's `PatchStorageLocationRequest`: only the fields that are set are changed."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    storage_method: StorageMethod | None = None
    supplier_reference_id: SupplierReferenceId | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = None


class StorageLocation(_Response):
    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None = None
    project_id: IsometricId | None = None
    supplier_id: str | None = None
    name: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    storage_method: str | None = None
    description: str | None = None


# --- biochar applications ------------------------------------------------------------------------


class CreateBiocharApplicationRequest(_Request):
    project_id: IsometricId
    production_batch_id: IsometricId
    storage_site_id: IsometricId = Field(description="The storage location (slc_...) it went to")
    application_date: date
    average_application_rate: ScalarQuantity
    truck_mass_on_arrival: ScalarQuantity
    truck_mass_on_departure: ScalarQuantity
    supplier_reference_id: SupplierReferenceId = Field(min_length=1, max_length=100)
    source_ids: list[IsometricId] = Field(default_factory=list)


class BiocharApplication(_Response):
    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None = None
    production_batch_id: IsometricId | None = None
    storage_location_id: IsometricId | None = None
    # Not in the 2026-06 rename table, so still `removal_id` on the wire.
    removal_id: IsometricId | None = None
    application_date: date | None = None
    uploaded_at: datetime | None = None
    average_application_rate: ScalarQuantity | None = None
    truck_mass_on_arrival: ScalarQuantity | None = None
    truck_mass_on_departure: ScalarQuantity | None = None


# --- datapoints (the values a GHG entry's template inputs point at) -------------------------------


class CreateDatapointRequest(_Request):
    """POST /datapoints. `quantity` is the spec's DatapointQuantityInput (a unit is always sent here)."""

    project_id: IsometricId
    supplier_reference_id: SupplierReferenceId = Field(min_length=1, max_length=100)
    display_name: str = Field(min_length=1, max_length=100)
    type: DatapointType
    quantity: ScalarQuantity
    description: str
    source_ids: list[IsometricId]  # required by the spec, may be empty
    measured_at: AwareDatetime | None = None


class UpdateDatapointRequest(_Request):
    """The spec's `PatchDatapointRequest`: only the fields that are set are changed."""

    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    type: DatapointType | None = None
    quantity: ScalarQuantity | None = None
    description: str | None = None
    source_ids: list[IsometricId] | None = None


class Datapoint(_Response):
    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None = None
    project_id: IsometricId | None = None
    display_name: str | None = None
    type: DatapointType | str | None = None  # str: a type added after this client was written
    quantity: ScalarQuantity | None = None
    description: str | None = None
    source_ids: list[IsometricId] = Field(default_factory=list)
    measured_at: datetime | None = None
    locked_status: str | None = None
    uncertainty_justification: str | None = None


# --- GHG entry templates (formerly removal templates; made in the web app, read here) --------------


class GhgEntryTemplateComponentInput(_Response):
    """The spec's `RemovalTemplateComponentInput`: `datapoint_id` is set for fixed inputs."""

    input_key: str
    datapoint_id: IsometricId | None = None
    display_name: str | None = None
    type: str | None = None  # fixed | monitored
    quantity_kind: str | None = None


class GhgEntryTemplateComponent(_Response):
    """The spec's `RemovalTemplateComponent`."""

    id: IsometricId
    display_name: str | None = None
    description: str | None = None
    blueprint_key: str | None = None
    ghg_entry_template_id: IsometricId | None = None
    removal_template_component_group_id: IsometricId | None = None  # not renamed
    inputs: list[GhgEntryTemplateComponentInput] = Field(default_factory=list)


class GhgEntryTemplateComponentGroup(_Response):
    """The spec's `RemovalTemplateComponentGroup`."""

    id: IsometricId
    key: str | None = None
    display_name: str | None = None
    description: str | None = None
    components: list[GhgEntryTemplateComponent] = Field(default_factory=list)


class GhgEntryTemplate(_Response):
    """The spec's `RemovalTemplate`."""

    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None = None
    display_name: str | None = None
    project_id: IsometricId | None = None
    groups: list[GhgEntryTemplateComponentGroup] = Field(default_factory=list)

    @property
    def components(self) -> list[GhgEntryTemplateComponent]:
        return [component for group in self.groups for component in group.components]


# --- GHG entries (formerly removals) -------------------------------------------------------------


class CreateComponentScalarInput(_Request):
    typename: Literal["CreateComponentScalarInput"] = Field(
        default="CreateComponentScalarInput", alias="__typename"
    )
    input_key: str = Field(max_length=100)
    datapoint_id: IsometricId


class CreateComponentListInput(_Request):
    typename: Literal["CreateComponentListInput"] = Field(
        default="CreateComponentListInput", alias="__typename"
    )
    input_key: str = Field(max_length=100)
    datapoint_ids: list[IsometricId]


class GhgEntryTemplateComponentInputs(_Request):
    """The spec's `RemovalTemplateComponentInputs`."""

    ghg_entry_template_component_id: IsometricId
    inputs: list[CreateComponentScalarInput | CreateComponentListInput]


class CreateGhgEntryRequest(_Request):
    """The spec's `CreateRemovalRequest` (POST /ghg_entries)."""

    project_id: IsometricId
    supplier_reference_id: SupplierReferenceId = Field(min_length=1, max_length=100)
    started_on: date
    completed_on: date
    ghg_entry_template_id: IsometricId | None = None
    ghg_entry_template_components: list[GhgEntryTemplateComponentInputs] | None = None
    feedstock_type_id: IsometricId | None = None


class GhgEntry(_Response):
    """The spec's `Removal`. No status: `ghg_statement_id is None` means draft."""

    id: IsometricId
    supplier_reference_id: SupplierReferenceId | None = None
    started_on: date | None = None
    completed_on: date | None = None
    co2e_net_removed_kg: float | None = None
    co2e_net_removed_without_discount_kg: float | None = None
    co2e_net_removed_standard_deviation_kg: float | None = None
    ghg_statement_id: IsometricId | None = None
    feedstock_type_id: IsometricId | None = None


# --- GHG statements ------------------------------------------------------------------------------


class CreateGhgStatementRequest(_Request):
    project_id: IsometricId
    end_on: date = Field(description="Inclusive end of the reporting period (reporting_period_end_at)")


class SubmitGhgStatementRequest(_Request):
    ghg_statement_report_url: str


class ResubmitGhgStatementRequest(_Request):
    """Submitting again after FAILED_VERIFICATION."""

    ghg_statement_report_url: str
    summary_of_changes: str


class GhgStatement(_Response):
    id: IsometricId
    project_id: IsometricId | None = None
    status: GhgStatementStatus | str  # str: a status added after this client was written
    ghg_entry_ids: list[IsometricId] = Field(default_factory=list)
    reporting_period_start_at: date | None = None
    reporting_period_end_at: date | None = None
    ghg_statement_report_url: str | None = None
    verifier: str | None = None
    submitted_at: datetime | None = None
    credits_issued_at: datetime | None = None
    pending_total_co2e_removed_kg: float | None = None
