"""Registry sync state, kept beside the entity tables so those stay registry-agnostic.

- `registry_identities`: one row per external object (a two-step entity has two rows), so a retry
  resumes at the step that failed.
- `registry_audit_events`: append-only, one row per registry call or state change.
- `field_lineage`: every local field a confirmation pull changed.
- `request_budgets`: the shared request pacing per registry credential.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dmrv_sync.db.base import Base, BigIntId, utcnow


class SyncStatus(enum.StrEnum):
    PENDING = "pending"  # known, never attempted
    SYNCING = "syncing"  # a worker holds the lease (lease_holder until lease_expires_at)
    SYNCED = "synced"  # the registry has it; external_id set
    ERROR = "error"  # failed, and nothing reached the registry (or it rejected it): safe to resend
    # The request may have reached the registry and no answer came back: the object must be looked up
    # (by supplier_reference_id or natural key) before anything is sent again.
    UNKNOWN = "unknown"
    # Synced, then the local data changed in a way the registry cannot take as an update.
    DRIFTED = "drifted"


class RegistryIdentity(Base):
    __tablename__ = "registry_identities"
    __table_args__ = (
        UniqueConstraint("entity_type", "entity_id", "registry_name", "external_entity_type"),
        Index(None, "registry_name", "external_entity_type", "sync_status"),
        Index(None, "registry_name", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    registry_name: Mapped[str] = mapped_column(String(64))
    external_entity_type: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(100))
    sync_status: Mapped[SyncStatus] = mapped_column(
        Enum(
            SyncStatus,
            name="sync_status",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=SyncStatus.PENDING,
    )
    last_synced_at: Mapped[datetime | None]
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    # "metadata" is reserved on declarative classes; the column keeps the design's name.
    sync_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a lease expired mid-step or an answer was lost: the next claim must reconcile first.
    needs_reconciliation: Mapped[bool] = mapped_column(Boolean, default=False)
    payload_hash: Mapped[str | None] = mapped_column(String(64), comment="sha256 of the last payload sent")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditOutcome(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # failed; nothing reached the registry, or it said no
    UNKNOWN = "unknown"  # sent, no answer
    SKIPPED = "skipped"  # not sent (validation, parent missing, lease held elsewhere)


class RegistryAuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "registry_audit_events"
    __table_args__ = (Index(None, "entity_type", "entity_id"), Index(None, "run_id"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("registry_identities.id", ondelete="SET NULL"), index=True
    )
    entity_type: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    registry_name: Mapped[str | None] = mapped_column(String(64))
    external_entity_type: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(64), comment="e.g. claim, create, lookup, synced, error")
    http_method: Mapped[str | None] = mapped_column(String(8))
    http_path: Mapped[str | None] = mapped_column(String(300))
    http_status: Mapped[int | None]
    duration_ms: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[AuditOutcome] = mapped_column(
        Enum(
            AuditOutcome,
            name="audit_outcome",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    error: Mapped[str | None] = mapped_column(Text, comment="redacted: never contains a secret")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class FieldLineage(Base):
    """One row per local field a registry pull changed: what it was, what it became, and why."""

    __tablename__ = "field_lineage"
    __table_args__ = (Index(None, "entity_type", "entity_id", "field"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(100))
    previous_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200), comment="e.g. isometric:ghg_statement:ggs_...")
    run_id: Mapped[str | None] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class RequestBudget(Base):
    """Pacing state shared by every process using one registry credential (see registries/budget.py)."""

    __tablename__ = "request_budgets"

    key: Mapped[str] = mapped_column(String(100), primary_key=True, comment="registry + credential digest")
    next_slot_at: Mapped[float] = mapped_column(Float, default=0.0, comment="epoch seconds")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
