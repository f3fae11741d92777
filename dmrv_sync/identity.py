"""The identity service: the one owner of `registry_identities` and its audit trail.

Every state change is a single conditional UPDATE (never read-then-write), so concurrent workers on
PostgreSQL — or processes sharing a SQLite file — can race for the same identity and exactly one wins.
Each method runs in its own short transaction.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from dmrv_sync.db.base import utcnow
from dmrv_sync.db.sync_state import AuditOutcome, RegistryAuditEvent, RegistryIdentity, SyncStatus
from dmrv_sync.redaction import redact

DEFAULT_LEASE_SECONDS = 300.0
# Entity IDs in one IN list (SQLite's older builds allow 999 bound parameters a statement).
ROWS_PER_QUERY = 500


class LeaseLost(RuntimeError):
    """The caller no longer holds the lease it is trying to act under (it expired and was taken over)."""


def default_lease_holder() -> str:
    """host:pid:random — unique per worker, readable in the UI when someone asks who holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class IdentityKey:
    entity_type: str
    entity_id: str
    registry_name: str
    external_entity_type: str


@dataclass(frozen=True)
class Claim:
    """A live lease on one identity. `reconcile` means: look the object up before sending anything."""

    identity_id: int
    holder: str
    expires_at: datetime
    reconcile: bool
    attempt: int
    external_id: str | None
    previous_status: SyncStatus
    unsettled_since: datetime


class IdentityService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        secrets: Iterable[str] = (),
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        run_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = session_factory
        self._clock = clock
        self._secrets = tuple(secrets)
        self.lease_seconds = lease_seconds
        self.run_id = run_id

    # -- reading -------------------------------------------------------------------------------------

    def get_or_create_registry_identity(
        self, entity_type: str, entity_id: str, registry_name: str, external_entity_type: str
    ) -> RegistryIdentity:
        """The identity row for one external object, created `pending` if it did not exist.

        INSERT .. ON CONFLICT DO NOTHING then SELECT: two workers creating the same identity both get
        the one row, neither gets an IntegrityError.
        """
        values = dict(
            entity_type=entity_type,
            entity_id=str(entity_id),
            registry_name=registry_name,
            external_entity_type=external_entity_type,
            sync_status=SyncStatus.PENDING,
            sync_metadata={},
            attempt_count=0,
            needs_reconciliation=False,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = insert(RegistryIdentity).values(**values).on_conflict_do_nothing()
            session.execute(stmt)
            row = session.scalars(
                self._key_query(entity_type, str(entity_id), registry_name, external_entity_type)
            ).one()
            session.expunge(row)
            return row

    def get_identity(
        self, entity_type: str, entity_id: str, registry_name: str, external_entity_type: str
    ) -> RegistryIdentity | None:
        with self._sessions() as session:
            row = session.scalars(
                self._key_query(entity_type, str(entity_id), registry_name, external_entity_type)
            ).first()
            if row is not None:
                session.expunge(row)
            return row

    def get_external_id(
        self, entity_type: str, entity_id: str, registry_name: str, external_entity_type: str
    ) -> str | None:
        row = self.get_identity(entity_type, entity_id, registry_name, external_entity_type)
        return row.external_id if row is not None and row.sync_status in _HAS_OBJECT else None

    def get_external_ids(
        self,
        entity_type: str,
        entity_ids: Sequence[str],
        registry_name: str,
        external_entity_types: Sequence[str],
    ) -> dict[str, dict[str, str]]:
        """{entity ID: {external type: external ID}} of the objects already in the registry, in one
        query per ROWS_PER_QUERY entities (one lookup per entity and type opens a session each)."""
        found: dict[str, dict[str, str]] = {}
        for entity_id, external_type, external_id in self._objects(
            entity_type, entity_ids, registry_name, external_entity_types
        ):
            if external_id is not None:
                found.setdefault(entity_id, {})[external_type] = external_id
        return found

    def fully_synced(
        self,
        entity_type: str,
        entity_ids: Sequence[str],
        registry_name: str,
        external_entity_types: Sequence[str],
    ) -> set[str]:
        """Those of `entity_ids` whose every external object is synced: `is_entity_fully_synced` for many
        entities, one query per ROWS_PER_QUERY of them."""
        types: dict[str, set[str]] = {}
        for entity_id, external_type, _ in self._objects(
            entity_type, entity_ids, registry_name, external_entity_types
        ):
            types.setdefault(entity_id, set()).add(external_type)
        wanted = set(external_entity_types)
        return {entity_id for entity_id, have in types.items() if have == wanted}

    def _objects(
        self,
        entity_type: str,
        entity_ids: Sequence[str],
        registry_name: str,
        external_entity_types: Sequence[str],
    ) -> list[tuple[str, str, str | None]]:
        """(entity ID, external type, external ID) of the identity rows of `entity_ids` whose object is in
        the registry, in one query per ROWS_PER_QUERY entities."""
        ids = [str(i) for i in entity_ids]
        rows: list[tuple[str, str, str | None]] = []
        with self._sessions() as session:
            for start in range(0, len(ids), ROWS_PER_QUERY):
                rows.extend(
                    session.execute(
                        select(
                            RegistryIdentity.entity_id,
                            RegistryIdentity.external_entity_type,
                            RegistryIdentity.external_id,
                        ).where(
                            RegistryIdentity.entity_type == entity_type,
                            RegistryIdentity.entity_id.in_(ids[start : start + ROWS_PER_QUERY]),
                            RegistryIdentity.registry_name == registry_name,
                            RegistryIdentity.external_entity_type.in_(list(external_entity_types)),
                            RegistryIdentity.sync_status.in_(list(_HAS_OBJECT)),
                        )
                    ).tuples()
                )
        return rows

    def is_entity_fully_synced(
        self, entity_type: str, entity_id: str, registry_name: str, external_entity_types: Sequence[str]
    ) -> bool:
        """True when every external object the registry keeps for this entity is synced."""
        return str(entity_id) in self.fully_synced(
            entity_type, [entity_id], registry_name, external_entity_types
        )

    def get_entity_sync_summary(
        self, entity_type: str, entity_id: str
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """`{registry: {external_type: {status, external_id, error, attempts, last_synced_at, ...}}}`."""
        with self._sessions() as session:
            rows = session.scalars(
                select(RegistryIdentity)
                .where(
                    RegistryIdentity.entity_type == entity_type, RegistryIdentity.entity_id == str(entity_id)
                )
                .order_by(RegistryIdentity.id)
            ).all()
        summary: dict[str, dict[str, dict[str, Any]]] = {}
        for row in rows:
            summary.setdefault(row.registry_name, {})[row.external_entity_type] = {
                "status": row.sync_status.value,
                "external_id": row.external_id,
                "error": row.last_sync_error,
                "attempts": row.attempt_count,
                "last_synced_at": row.last_synced_at.isoformat() if row.last_synced_at else None,
                "needs_reconciliation": row.needs_reconciliation,
                "metadata": row.sync_metadata or {},
            }
        return summary

    def get_entity_progress(self, steps: dict[tuple[str, str], int]) -> dict[tuple[str, str], dict[str, int]]:
        """Entities per (registry, entity_type) by where they stand, for `steps` = {(registry, entity_type):
        number of external objects it needs}: `synced` (all steps in the registry), `drifted` (in, but
        changed since in a way the registry cannot take), `error`, `unknown` (an outcome to look up),
        `in progress` (a step pending, leased, or not reached yet). Entities with no identity row yet are
        not counted. Two GROUP BYs in the database, so it stays cheap at any table size."""
        rank = case(
            (RegistryIdentity.sync_status == SyncStatus.ERROR, 4),
            (RegistryIdentity.sync_status == SyncStatus.UNKNOWN, 3),
            (RegistryIdentity.sync_status.in_([SyncStatus.PENDING, SyncStatus.SYNCING]), 2),
            (RegistryIdentity.sync_status == SyncStatus.DRIFTED, 1),
            else_=0,
        )
        per_entity = (
            select(
                RegistryIdentity.registry_name.label("registry"),
                RegistryIdentity.entity_type.label("entity_type"),
                func.max(rank).label("worst"),
                func.count().label("rows"),
            )
            .group_by(
                RegistryIdentity.registry_name, RegistryIdentity.entity_type, RegistryIdentity.entity_id
            )
            .subquery()
        )
        query = select(
            per_entity.c.registry,
            per_entity.c.entity_type,
            per_entity.c.worst,
            per_entity.c.rows,
            func.count(),
        ).group_by(per_entity.c.registry, per_entity.c.entity_type, per_entity.c.worst, per_entity.c.rows)
        states = {4: "error", 3: "unknown", 2: "in progress", 1: "drifted", 0: "synced"}
        progress: dict[tuple[str, str], dict[str, int]] = {}
        with self._sessions() as session:
            for registry, entity_type, worst, rows, count in session.execute(query):
                state = states[worst]
                if worst < 2 and rows < steps.get((registry, entity_type), rows):
                    state = "in progress"  # every step so far is in, the next ones are still to come
                counts = progress.setdefault((registry, entity_type), {})
                counts[state] = counts.get(state, 0) + count
        return progress

    def get_registry_sync_stats(
        self, registry_name: str | None = None
    ) -> dict[str, dict[str, dict[str, int]]]:
        """`{registry: {external_entity_type: {status: count}}}` (the shape `dmrv-sync status --json` prints)."""
        query = select(
            RegistryIdentity.registry_name,
            RegistryIdentity.external_entity_type,
            RegistryIdentity.sync_status,
            func.count(),
        ).group_by(
            RegistryIdentity.registry_name,
            RegistryIdentity.external_entity_type,
            RegistryIdentity.sync_status,
        )
        if registry_name is not None:
            query = query.where(RegistryIdentity.registry_name == registry_name)
        stats: dict[str, dict[str, dict[str, int]]] = {}
        with self._sessions() as session:
            for registry, external_type, status, count in session.execute(query):
                stats.setdefault(registry, {}).setdefault(external_type, {})[SyncStatus(status).value] = count
        return stats

    # -- state changes -------------------------------------------------------------------------------

    def mark_syncing(
        self,
        identity_id: int,
        holder: str,
        *,
        lease_seconds: float | None = None,
        without_object: bool = False,
    ) -> Claim | None:
        """Claim the identity's lease. None when another worker holds a live lease.

        A claim over an expired `syncing` lease, or over an `unknown` outcome, comes back with
        `reconcile=True`: the previous holder may have sent the request, so the object must be looked up
        before anything is re-sent (invariant 3 → 1).

        `without_object=True` (a claim to create the object, or to block its creation): None also when
        the row is `synced` or `drifted` — another worker created it since the caller read the row, and a
        create now would make a second object (the race of two runs over the same partitions).
        """
        now = self._clock()
        expires = now + timedelta(seconds=self.lease_seconds if lease_seconds is None else lease_seconds)
        # Evaluated by the UPDATE against the row as it was, so the decision and the claim are one step.
        reconcile_needed = or_(
            RegistryIdentity.needs_reconciliation.is_(True),
            RegistryIdentity.sync_status == SyncStatus.UNKNOWN,
            and_(RegistryIdentity.sync_status == SyncStatus.SYNCING, RegistryIdentity.lease_holder != holder),
        )
        with self._sessions.begin() as session:
            # A no-op write first takes the row's lock (PostgreSQL) or the database's write lock (SQLite),
            # so the "previous" values read next are exactly the ones the claiming UPDATE replaces.
            session.execute(
                update(RegistryIdentity)
                .where(RegistryIdentity.id == identity_id)
                # Set updated_at to itself too, or its onupdate default would stamp it with now.
                .values(attempt_count=RegistryIdentity.attempt_count, updated_at=RegistryIdentity.updated_at)
                .execution_options(synchronize_session=False)
            )
            previous = session.execute(
                select(
                    RegistryIdentity.sync_status,
                    RegistryIdentity.lease_holder,
                    RegistryIdentity.lease_expires_at,
                    RegistryIdentity.updated_at,
                ).where(RegistryIdentity.id == identity_id)
            ).one_or_none()
            if previous is None:
                raise KeyError(f"registry identity {identity_id} does not exist")
            result = session.execute(
                update(RegistryIdentity)
                .where(
                    RegistryIdentity.id == identity_id,
                    or_(
                        RegistryIdentity.sync_status != SyncStatus.SYNCING,
                        RegistryIdentity.lease_expires_at.is_(None),
                        RegistryIdentity.lease_expires_at < now,
                        RegistryIdentity.lease_holder == holder,
                    ),
                    *(
                        [RegistryIdentity.sync_status.not_in([SyncStatus.SYNCED, SyncStatus.DRIFTED])]
                        if without_object
                        else []
                    ),
                )
                .values(
                    needs_reconciliation=reconcile_needed,
                    sync_status=SyncStatus.SYNCING,
                    lease_holder=holder,
                    lease_expires_at=expires,
                    attempt_count=RegistryIdentity.attempt_count + 1,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                self._audit(
                    session,
                    identity_id,
                    "claim",
                    AuditOutcome.SKIPPED,
                    error=(
                        f"already {previous.sync_status} by another worker"
                        if previous.sync_status in (SyncStatus.SYNCED, SyncStatus.DRIFTED)
                        else f"lease held by another worker until {previous.lease_expires_at}"
                    ),
                )
                return None
            row = session.get_one(RegistryIdentity, identity_id, populate_existing=True)
            self._audit(
                session,
                row,
                "claim",
                AuditOutcome.OK,
                details={"reconcile": row.needs_reconciliation, "previous_status": previous.sync_status},
            )
            return Claim(
                identity_id=identity_id,
                holder=holder,
                expires_at=expires,
                reconcile=row.needs_reconciliation,
                attempt=row.attempt_count,
                external_id=row.external_id,
                previous_status=SyncStatus(previous.sync_status),
                # A lookup that settles this claim's reconciliation must have started after this moment:
                # the previous holder could have sent its request until its lease ran out.
                unsettled_since=max(
                    [t for t in (previous.updated_at, previous.lease_expires_at) if t is not None],
                    default=now,
                ),
            )

    def mark_synced(
        self,
        claim: Claim,
        external_id: str,
        *,
        payload_hash: str | None = None,
        metadata: dict[str, Any] | None = None,
        status: SyncStatus = SyncStatus.SYNCED,
        note: str | None = None,
    ) -> None:
        """Record the external object and release the lease. Raises LeaseLost if the lease was taken over.

        `status=DRIFTED` with a `note` records an object the registry holds with older data.
        """
        now = self._clock()
        values: dict[str, Any] = dict(
            sync_status=status,
            external_id=external_id,
            last_synced_at=now,
            last_sync_error=redact(note, self._secrets) if note else None,
            needs_reconciliation=False,
            lease_holder=None,
            lease_expires_at=None,
            updated_at=now,
        )
        if payload_hash is not None:
            values["payload_hash"] = payload_hash
        if metadata is not None:
            values["sync_metadata"] = metadata
        self._release(claim, values, "synced", AuditOutcome.OK, details={"external_id": external_id})

    def mark_error(
        self,
        claim: Claim,
        error: str,
        *,
        outcome_unknown: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record a failure and release the lease.

        `outcome_unknown=True`: the request may have reached the registry; the identity becomes `unknown`
        and the next claim reconciles. Otherwise `error`: nothing was created, a resend is safe.
        """
        now = self._clock()
        message = redact(error, self._secrets)
        values: dict[str, Any] = dict(
            sync_status=SyncStatus.UNKNOWN if outcome_unknown else SyncStatus.ERROR,
            last_sync_error=message,
            needs_reconciliation=outcome_unknown,
            lease_holder=None,
            lease_expires_at=None,
            updated_at=now,
        )
        if metadata is not None:
            values["sync_metadata"] = metadata
        self._release(
            claim,
            values,
            "error",
            AuditOutcome.UNKNOWN if outcome_unknown else AuditOutcome.ERROR,
            error=message,
        )

    def record_call(
        self,
        identity: RegistryIdentity | int | None,
        operation: str,
        outcome: AuditOutcome,
        *,
        http_method: str | None = None,
        http_path: str | None = None,
        http_status: int | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """One audit row for one registry call."""
        with self._sessions.begin() as session:
            self._audit(
                session,
                identity,
                operation,
                outcome,
                http_method=http_method,
                http_path=http_path,
                http_status=http_status,
                duration_ms=duration_ms,
                error=error,
                details=details,
            )

    # -- internals -----------------------------------------------------------------------------------

    def _release(
        self, claim: Claim, values: dict[str, Any], operation: str, outcome: AuditOutcome, **audit: Any
    ) -> None:
        with self._sessions.begin() as session:
            result = session.execute(
                update(RegistryIdentity)
                .where(
                    and_(
                        RegistryIdentity.id == claim.identity_id,
                        RegistryIdentity.sync_status == SyncStatus.SYNCING,
                        RegistryIdentity.lease_holder == claim.holder,
                    )
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                raise LeaseLost(
                    f"registry identity {claim.identity_id}: the lease of {claim.holder} expired and was taken "
                    "over; this worker's result was not recorded (the new holder reconciles)"
                )
            self._audit(session, claim.identity_id, operation, outcome, **audit)

    def _audit(
        self,
        session: Session,
        identity: RegistryIdentity | int | None,
        operation: str,
        outcome: AuditOutcome,
        *,
        error: str | None = None,
        **fields: Any,
    ) -> None:
        row = session.get(RegistryIdentity, identity) if isinstance(identity, int) else identity
        session.add(
            RegistryAuditEvent(
                identity_id=row.id if row is not None else None,
                entity_type=row.entity_type if row is not None else None,
                entity_id=row.entity_id if row is not None else None,
                registry_name=row.registry_name if row is not None else None,
                external_entity_type=row.external_entity_type if row is not None else None,
                run_id=self.run_id,
                operation=operation,
                outcome=outcome,
                error=redact(error, self._secrets) if error else None,
                created_at=utcnow(),
                **fields,
            )
        )

    @staticmethod
    def _key_query(
        entity_type: str, entity_id: str, registry_name: str, external_entity_type: str
    ) -> Select[tuple[RegistryIdentity]]:
        return select(RegistryIdentity).where(
            RegistryIdentity.entity_type == entity_type,
            RegistryIdentity.entity_id == entity_id,
            RegistryIdentity.registry_name == registry_name,
            RegistryIdentity.external_entity_type == external_entity_type,
        )


# Statuses in which the registry holds the object (drifted: it does, with older data).
_HAS_OBJECT = frozenset({SyncStatus.SYNCED, SyncStatus.DRIFTED})
