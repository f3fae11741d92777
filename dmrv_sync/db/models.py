"""The supplier's own DMRV tables. They know nothing of registries: sync state lives in `sync_state`."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, Enum, ForeignKey, Index, Numeric, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dmrv_sync.db.base import Base, EntityMixin


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: identical on SQLite and PostgreSQL, easy to extend.
    return Enum(cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class ProductionRunStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"


class ApplicationStatus(enum.StrEnum):
    PLANNED = "planned"
    APPLIED = "applied"


class CreditBatchStatus(enum.StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    ISSUED = "issued"
    FAILED_VERIFICATION = "failed_verification"


class StorageMethod(enum.StrEnum):
    # Isometric's storage_method values for biochar (CreateStorageLocationRequest).
    BIOCHAR_FIELD = "biochar_field"
    BIOCHAR_LANDFILL = "biochar_landfill"


production_run_feedstock_types = Table(
    "production_run_feedstock_types",
    Base.metadata,
    Column("production_run_id", ForeignKey("production_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("feedstock_type_id", ForeignKey("feedstock_types.id"), primary_key=True),
)

credit_batch_applications = Table(
    "credit_batch_applications",
    Base.metadata,
    Column("credit_batch_id", ForeignKey("credit_batches.id", ondelete="CASCADE"), primary_key=True),
    Column("application_id", ForeignKey("applications.id"), primary_key=True),
)


class Facility(EntityMixin, Base):
    __tablename__ = "facilities"
    __table_args__ = (Index(None, "updated_at", "id"),)

    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(3), comment="ISO 3166-1 alpha-3")
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]


class FeedstockType(EntityMixin, Base):
    __tablename__ = "feedstock_types"
    __table_args__ = (Index(None, "updated_at", "id"),)

    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(100))


class ProductionRun(EntityMixin, Base):
    __tablename__ = "production_runs"
    __table_args__ = (Index(None, "updated_at", "id"),)

    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facilities.id"), index=True)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    biochar_dry_mass_kg: Mapped[float | None]
    moisture_percent: Mapped[float | None]
    organic_carbon_fraction: Mapped[float | None]
    h_corg_molar_ratio: Mapped[float | None]
    o_corg_molar_ratio: Mapped[float | None]
    pyrolysis_temperature_c: Mapped[float | None]
    status: Mapped[ProductionRunStatus] = mapped_column(
        _enum(ProductionRunStatus, "production_run_status"), default=ProductionRunStatus.DRAFT
    )

    facility: Mapped[Facility] = relationship()
    feedstock_types: Mapped[list[FeedstockType]] = relationship(secondary=production_run_feedstock_types)


class Application(EntityMixin, Base):
    __tablename__ = "applications"
    __table_args__ = (Index(None, "updated_at", "id"),)

    production_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("production_runs.id"), index=True)
    site_name: Mapped[str | None] = mapped_column(String(200))
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    storage_method: Mapped[StorageMethod | None] = mapped_column(_enum(StorageMethod, "storage_method"))
    application_date: Mapped[date | None]
    applied_mass_kg: Mapped[float | None]
    area_ha: Mapped[float | None]
    truck_mass_on_arrival_kg: Mapped[float | None]
    truck_mass_on_departure_kg: Mapped[float | None]
    status: Mapped[ApplicationStatus] = mapped_column(
        _enum(ApplicationStatus, "application_status"), default=ApplicationStatus.PLANNED
    )

    production_run: Mapped[ProductionRun] = relationship()


class CreditBatch(EntityMixin, Base):
    __tablename__ = "credit_batches"
    __table_args__ = (Index(None, "updated_at", "id"),)

    reporting_period_start: Mapped[date | None]
    reporting_period_end: Mapped[date | None]
    status: Mapped[CreditBatchStatus] = mapped_column(
        _enum(CreditBatchStatus, "credit_batch_status"), default=CreditBatchStatus.DRAFT
    )
    report_url: Mapped[str | None] = mapped_column(Text)
    estimated_tco2e: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    # The registry is the authority for these (confirmation pulls write them, with lineage rows).
    submitted_at: Mapped[datetime | None]
    credits_issued_at: Mapped[datetime | None]
    verifier: Mapped[str | None] = mapped_column(String(200))

    applications: Mapped[list[Application]] = relationship(secondary=credit_batch_applications)


# Local entity type name -> model. The names are the ones used in registry_identities.entity_type.
ENTITY_MODELS: dict[str, type[EntityMixin]] = {
    "facility": Facility,
    "feedstock_type": FeedstockType,
    "production_run": ProductionRun,
    "application": Application,
    "credit_batch": CreditBatch,
}
