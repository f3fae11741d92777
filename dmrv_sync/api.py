"""The user API: what the CLI, the Dagster assets and a user's own scripts call.

Each function opens one sync engine for the configured registry (Isometric by default), does its work
and closes the registry client. For many calls in a row, use `sync_engine()` directly.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from dmrv_sync.db.models import Facility
from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import RegistryIdentity
from dmrv_sync.identity import IdentityService
from dmrv_sync.registries.catalog import build_adapter
from dmrv_sync.settings import Settings, get_settings
from dmrv_sync.sync.engine import CallAuditor, ConfirmResult, EntityResult, SyncEngine, SyncReport

DEFAULT_REGISTRY = "isometric"
_FACILITY_ID = re.compile(r"^fcl_[0-9A-Za-z]{16,33}$")


class UserError(ValueError):
    """Bad input from the user; the message says what is wrong and what to do."""


def identity_service(settings: Settings | None = None, *, run_id: str | None = None) -> IdentityService:
    settings = settings or get_settings()
    return IdentityService(
        get_session_factory(settings.database_url),
        secrets=settings.secret_values,
        lease_seconds=settings.sync_lease_seconds,
        run_id=run_id,
    )


@contextmanager
def sync_engine(
    settings: Settings | None = None,
    *,
    registry: str = DEFAULT_REGISTRY,
    run_id: str | None = None,
    concurrency: int | None = None,
    **client_options: Any,
) -> Iterator[SyncEngine]:
    settings = settings or get_settings()
    identities = identity_service(settings, run_id=run_id)
    adapter = build_adapter(registry, settings, observer=CallAuditor(identities), **client_options)
    try:
        yield SyncEngine(
            adapter,
            get_session_factory(settings.database_url),
            identities=identities,
            secrets=settings.secret_values,
            concurrency=concurrency or settings.sync_concurrency,
        )
    finally:
        adapter.close()


def _sync_one(entity_type: str, entity_id: str, **options: Any) -> EntityResult:
    with sync_engine(**options) as engine:
        return engine.sync_entity(entity_type, entity_id)


def sync_facility(entity_id: str, **options: Any) -> EntityResult:
    return _sync_one("facility", entity_id, **options)


def sync_feedstock_type(entity_id: str, **options: Any) -> EntityResult:
    return _sync_one("feedstock_type", entity_id, **options)


def sync_production_batch(production_run_id: str, **options: Any) -> EntityResult:
    return _sync_one("production_run", production_run_id, **options)


def sync_application(application_id: str, **options: Any) -> EntityResult:
    return _sync_one("application", application_id, **options)


def sync_ghg_statement(credit_batch_id: str, **options: Any) -> EntityResult:
    return _sync_one("credit_batch", credit_batch_id, **options)


def sync_all_pending(**options: Any) -> SyncReport:
    """Every ready record not yet in the registry (or changed since), parents first."""
    with sync_engine(**options) as engine:
        return engine.sync_all("pending")


def retry_all_failed(**options: Any) -> SyncReport:
    """Every record with a failed or unsettled step; unknown outcomes are looked up before any resend."""
    with sync_engine(**options) as engine:
        return engine.sync_all("failed")


def confirm_ghg_statements(**options: Any) -> list[ConfirmResult]:
    """Pull statement verdicts into the local credit batches (with lineage rows)."""
    with sync_engine(**options) as engine:
        return engine.confirm()


def plan(entity_type: str, entity_id: str, **options: Any) -> dict[str, Any]:
    with sync_engine(**options) as engine:
        return engine.plan(entity_type, entity_id)


def get_entity_sync_summary(entity_type: str, entity_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    return identity_service().get_entity_sync_summary(entity_type, entity_id)


def get_registry_sync_stats(registry: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
    return identity_service().get_registry_sync_stats(registry)


def link_facility(
    facility_id: str,
    external_id: str,
    *,
    relink: bool = False,
    registry: str = DEFAULT_REGISTRY,
    settings: Settings | None = None,
) -> str:
    """Record that a local facility is the registry's `external_id` (created in the registry's web app).

    Returns what happened, in words. Linking again to the same ID is a no-op; to another ID needs
    `relink=True`, because production batches already sent name the old one.
    """
    settings = settings or get_settings()
    if not _FACILITY_ID.match(external_id):
        raise UserError(
            f"{external_id!r} is not an Isometric facility ID: it looks like fcl_ followed by 16-33 letters and "
            "digits (copy it from the facility's page in the Certify web app)"
        )
    try:
        key = uuid.UUID(facility_id)
    except ValueError:
        raise UserError(f"{facility_id!r} is not a facility ID (a UUID from the facilities table)") from None
    with get_session_factory(settings.database_url)() as session:
        facility = session.get(Facility, key)
        if facility is None:
            raise UserError(f"there is no facility {facility_id} in the DMRV database")
        name = facility.name
        # Two local facilities cannot be one registry facility: their batches would be filed as one site's.
        other = session.scalars(
            select(RegistryIdentity.entity_id).where(
                RegistryIdentity.entity_type == "facility",
                RegistryIdentity.registry_name == registry,
                RegistryIdentity.external_id == external_id,
                RegistryIdentity.entity_id != str(key),
            )
        ).first()
        if other is not None:
            raise UserError(
                f"{external_id} is already linked to facility {other}; one {registry} facility is one local "
                f"facility. Link facility {key} ({name}) to its own facility ID, or relink {other} first"
            )
    identities = identity_service(settings)
    identity = identities.get_or_create_registry_identity("facility", str(key), registry, "facility")
    if identity.external_id == external_id and identity.sync_status.value == "synced":
        return f"facility {key} ({name}) is already linked to {external_id}: nothing to do"
    if identity.external_id and identity.external_id != external_id and not relink:
        raise UserError(
            f"facility {key} ({name}) is already linked to {identity.external_id}; production batches sent "
            f"so far name that facility. To link it to {external_id} instead, pass --relink"
        )
    claim = identities.mark_syncing(identity.id, "dmrv-sync link")
    if claim is None:
        raise UserError(f"facility {key} is being synced right now; try again in a moment")
    identities.mark_synced(claim, external_id, metadata={"linked_by": "dmrv-sync link"})
    return f"facility {key} ({name}) linked to {registry} facility {external_id}"
