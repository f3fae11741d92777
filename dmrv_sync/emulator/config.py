"""Start-up configuration: what the registry's web app would have provisioned, faults, persistence.

A config file is the JSON form of `EmulatorConfig` (see example_config.json). Every part has a default,
and the defaults take the project and template IDs from the project's settings, so the demo, the
client and the emulator agree without extra configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from dmrv_sync.emulator.faults import FaultConfig
from dmrv_sync.emulator.schemas import ComponentInputType, IsometricId, QuantityKind, SupplierReferenceId
from dmrv_sync.settings import Settings


class ProvisionedProject(BaseModel):
    id: IsometricId
    name: str = "Demo biochar project"


class ProvisionedFacility(BaseModel):
    id: IsometricId
    name: str


class ProvisionedFeedstockType(BaseModel):
    """A feedstock type the user created in the web app. Without an id, one is generated."""

    name: str
    supplier_reference_id: SupplierReferenceId | None = None
    id: IsometricId | None = None


class ProvisionedTemplateInput(BaseModel):
    """One input of a template component (the spec's RemovalTemplateComponentInput). `monitored` inputs
    take a datapoint per GHG entry; `fixed` ones carry theirs in the template (`datapoint_id`)."""

    input_key: str = Field(min_length=1, max_length=100)
    display_name: str
    quantity_kind: QuantityKind
    type: ComponentInputType = "monitored"
    datapoint_id: IsometricId | None = None


class ProvisionedTemplateComponent(BaseModel):
    id: IsometricId
    name: str
    description: str | None = None
    blueprint_key: str = "biochar_storage"
    inputs: list[ProvisionedTemplateInput] = Field(default_factory=list)


class ProvisionedGhgEntryTemplate(BaseModel):
    id: IsometricId
    project_id: IsometricId
    name: str = "Biochar GHG entry template"
    # The spec groups a template's components; the emulator keeps them in one group.
    group_id: IsometricId = "rtg_1DEMOGROUP000001"
    components: list[ProvisionedTemplateComponent] = Field(default_factory=list)
    # The emulator's stand-in for the registry's calculation: when a GHG entry supplies every monitored
    # input, its CO2e before discount = factor x the product of the inputs in base units (kg, fraction):
    # for the demo template, applied biochar mass x organic carbon fraction x 44/12. An entry without
    # them reports the fixed figure below.
    co2e_factor: float = Field(default=44 / 12, gt=0)
    co2e_net_removed_without_discount_kg: float = 1000.0
    discount_fraction: float = Field(default=0.05, ge=0.0, le=1.0)

    def component(self, component_id: str) -> ProvisionedTemplateComponent | None:
        return next((c for c in self.components if c.id == component_id), None)


DEMO_TEMPLATE_COMPONENTS = [
    ProvisionedTemplateComponent(
        id="rtc_1DEMOCOMPONENT01",
        name="Biochar carbon storage",
        description="Biochar applied to soil in the reporting period",
        inputs=[
            ProvisionedTemplateInput(
                input_key="biochar_mass_applied", display_name="Biochar mass applied", quantity_kind="mass"
            )
        ],
    ),
    ProvisionedTemplateComponent(
        id="rtc_1DEMOCOMPONENT02",
        name="Biochar carbon content",
        description="Organic carbon content of the applied biochar",
        blueprint_key="biochar_carbon_content",
        inputs=[
            ProvisionedTemplateInput(
                input_key="organic_carbon_fraction",
                display_name="Organic carbon fraction (dry basis)",
                quantity_kind="mass_fraction",
            )
        ],
    ),
]


def _default_projects() -> list[ProvisionedProject]:
    return [ProvisionedProject(id=Settings().isometric_project_id)]


def _default_facilities() -> list[ProvisionedFacility]:
    return [
        ProvisionedFacility(id=f"fcl_1DEMOFACILITY{n:03d}", name=f"Demo pyrolysis plant {n}")
        for n in range(1, 6)
    ]


def _default_templates() -> list[ProvisionedGhgEntryTemplate]:
    settings = Settings()
    return [
        ProvisionedGhgEntryTemplate(
            id=settings.isometric_ghg_entry_template_id,
            project_id=settings.isometric_project_id,
            components=[c.model_copy(deep=True) for c in DEMO_TEMPLATE_COMPONENTS],
        )
    ]


class Provisioning(BaseModel):
    model_config = ConfigDict(extra="forbid")

    projects: list[ProvisionedProject] = Field(default_factory=_default_projects)
    facilities: list[ProvisionedFacility] = Field(default_factory=_default_facilities)
    feedstock_types: list[ProvisionedFeedstockType] = Field(default_factory=list)
    ghg_entry_templates: list[ProvisionedGhgEntryTemplate] = Field(default_factory=_default_templates)
    # Every storage location answer names the supplier (the organisation the credentials belong to).
    supplier_id: IsometricId = "spl_1DEMOSUPPLIER001"

    def project(self, project_id: str) -> ProvisionedProject | None:
        return next((p for p in self.projects if p.id == project_id), None)

    def facility(self, facility_id: str) -> ProvisionedFacility | None:
        return next((f for f in self.facilities if f.id == facility_id), None)

    def template(self, template_id: str) -> ProvisionedGhgEntryTemplate | None:
        return next((t for t in self.ghg_entry_templates if t.id == template_id), None)


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provisioning: Provisioning = Field(default_factory=Provisioning)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    state_path: Path | None = Field(default=None, description="SQLite file; objects survive restarts.")
    auto_verify_after_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Submitted statements become VERIFIED, then CREDITS_ISSUED, after this delay each.",
    )
    # None: accept the credentials in the project's settings (the usual case).
    client_secret: SecretStr | None = Field(default=None, exclude=True)
    access_token: SecretStr | None = Field(default=None, exclude=True)

    @classmethod
    def from_file(cls, path: Path) -> EmulatorConfig:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))

    def credentials(self) -> tuple[str, str]:
        """(client secret, access token) the emulator accepts."""
        settings = Settings()
        secret = self.client_secret or settings.isometric_client_secret
        token = self.access_token or settings.isometric_access_token
        return secret.get_secret_value(), token.get_secret_value()
