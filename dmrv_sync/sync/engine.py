"""The step runner: takes local entities to a registry through its adapter, one identity row per step.

For each entity: load → ready? → validate and check parents (no request when either fails) → for each
step: claim the lease → build the payload → reconcile first if an earlier attempt's outcome is unknown
→ send → record. A step that fails stops the entity there; the next attempt resumes at that step.
Many entities run concurrently in threads, bounded by `concurrency`; the registry client's shared
request budget paces the requests themselves.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dmrv_sync.db.base import utcnow
from dmrv_sync.db.models import ENTITY_MODELS
from dmrv_sync.db.sync_state import AuditOutcome, RegistryIdentity, SyncStatus
from dmrv_sync.identity import Claim, IdentityService, LeaseLost, default_lease_holder
from dmrv_sync.redaction import redact
from dmrv_sync.registries.errors import (
    AuthError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    RegistryError,
    TransientError,
    ValidationRejected,
)
from dmrv_sync.sync.adapter import (
    Confirmation,
    EntitySpec,
    ExternalIds,
    Issue,
    MissingExternalId,
    RegistryAdapter,
    Severity,
    StepContext,
    payload_hash,
    supplier_reference,
)
from dmrv_sync.sync.lineage import apply_registry_values

logger = logging.getLogger("dmrv_sync.sync")

# What reading a row of wrongly typed values raises (SQLite stores any type in any column): a bad date
# or number (ValueError, decimal.InvalidOperation), an unknown enum value (LookupError).
UNREADABLE = (ValueError, TypeError, LookupError, ArithmeticError)

# Rows read at once when selecting work (and entities synced at once by sync_all): what `select`
# holds in memory besides the chosen IDs.
ROWS_PER_CHUNK = 500
SYNC_CHUNK = 500

EntityStatus = Literal["synced", "error", "unknown", "drifted", "busy", "not_ready", "missing"]
HAS_OBJECT = (SyncStatus.SYNCED, SyncStatus.DRIFTED)
# An entity result whose every step (run) has its object in the registry.
REACHED = ("synced", "drifted")

# The identity a registry call is made for, so the client's observer can audit it against that row.
current_identity: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "current_identity", default=None
)


@dataclass
class StepResult:
    external_entity_type: str
    status: str
    action: str  # created, found, linked, reconciled, updated, unchanged, drifted, failed, blocked, busy
    external_id: str | None = None
    error: str | None = None
    attempts: int | None = None


@dataclass
class EntityResult:
    entity_type: str
    entity_id: str
    status: EntityStatus
    steps: list[StepResult] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("synced", "drifted", "not_ready")

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == Severity.WARNING]

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "status": self.status,
            "message": self.message,
            "steps": [asdict(s) for s in self.steps],
            "issues": [{"severity": i.severity.value, "text": str(i)} for i in self.issues],
        }


@dataclass
class ConfirmResult:
    entity_type: str
    entity_id: str
    changed: dict[str, tuple[Any, Any]]  # field -> (previous, new)
    error: str | None = None


@dataclass
class SyncReport:
    results: list[EntityResult] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for r in self.results:
            per_type = counts.setdefault(r.entity_type, {})
            per_type[r.status] = per_type.get(r.status, 0) + 1
        return counts

    @property
    def failed(self) -> list[EntityResult]:
        return [r for r in self.results if not r.ok]


class SyncEngine:
    def __init__(
        self,
        adapter: RegistryAdapter,
        session_factory: sessionmaker[Session],
        *,
        identities: IdentityService | None = None,
        secrets: Iterable[str] = (),
        concurrency: int = 8,
        holder: str | None = None,
        run_id: str | None = None,
        lease_seconds: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.adapter = adapter
        self._sessions = session_factory
        self._secrets = tuple(secrets)
        self.identities = identities or IdentityService(
            session_factory,
            secrets=self._secrets,
            run_id=run_id,
            clock=clock,
            **({} if lease_seconds is None else {"lease_seconds": lease_seconds}),
        )
        self.concurrency = max(1, concurrency)
        self.holder = holder or default_lease_holder()
        self._clock = clock
        self._external_ids = ExternalIds(
            self._external_id,
            lambda entity_type, ids, types: self.identities.get_external_ids(
                entity_type, ids, self.adapter.name, types
            ),
        )

    # -- selecting work ------------------------------------------------------------------------------

    def entity_order(self) -> list[str]:
        """Local entity types, parents before children."""
        ordered: list[str] = []
        specs = self.adapter.entities

        def visit(entity_type: str, trail: tuple[str, ...] = ()) -> None:
            if entity_type in ordered:
                return
            if entity_type in trail:
                raise ValueError(f"{self.adapter.name}: entity types form a cycle: {' -> '.join(trail)}")
            for parent in specs[entity_type].parent_types:
                visit(parent, (*trail, entity_type))
            ordered.append(entity_type)

        for entity_type in specs:
            visit(entity_type)
        return ordered

    def select(self, entity_type: str, which: Literal["pending", "failed", "all"]) -> list[str]:
        """IDs to sync. pending: ready, and not in the registry or changed since; failed: a step in
        error or unknown, or held by an expired lease.

        Streams: the rows are read ROWS_PER_CHUNK at a time with the sync state of just those (the
        columns it is judged by, not whole identity rows), and let go of before the next chunk, so the
        memory it takes is the chosen IDs and one chunk, however many rows the table holds."""
        spec = self.adapter.entities[entity_type]
        model = ENTITY_MODELS[entity_type]
        now = self._clock()
        chosen: list[str] = []
        with self._sessions() as session:
            for chunk in self._rows(session, model):
                states = self._step_states(session, entity_type, [entity_id for entity_id, _ in chunk])
                for entity_id, entity in chunk:
                    if self._chosen(entity_type, spec, which, now, entity, states.get(entity_id, {})):
                        chosen.append(entity_id)
                session.expunge_all()
        # The chunks are separate reads: a row changed meanwhile moves to the end and is read again.
        return list(dict.fromkeys(chosen))

    def _chosen(
        self,
        entity_type: str,
        spec: EntitySpec,
        which: Literal["pending", "failed", "all"],
        now: datetime,
        entity: Any,
        steps: dict[str, Any],
    ) -> bool:
        """Whether `select` takes this entity (None: a row that cannot be read), given its steps' state."""
        failed = any(
            r.sync_status in (SyncStatus.ERROR, SyncStatus.UNKNOWN)
            or (r.sync_status == SyncStatus.SYNCING and r.lease_expires_at and r.lease_expires_at < now)
            for r in steps.values()
        )
        if which == "failed":
            return failed
        if entity is None:  # unreadable: syncing it stores the error on it
            return which == "all" or not failed
        if not self.adapter.is_ready(entity_type, entity):
            return False
        if which == "all":
            return True
        if failed:
            return False
        done = [steps.get(t) for t in spec.external_types]
        if all(r is not None and r.sync_status in HAS_OBJECT for r in done):
            synced_at = min(r.last_synced_at or now for r in done if r is not None)
            if entity.updated_at <= synced_at:
                return False  # in the registry and unchanged since
        # a live lease: another worker is on it
        return not any(r is not None and r.sync_status == SyncStatus.SYNCING for r in done)

    def _step_states(
        self, session: Session, entity_type: str, entity_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """{entity ID: {external type: (sync_status, lease_expires_at, last_synced_at)}} of these entities
        in this registry, as rows of just those columns."""
        states: dict[str, dict[str, Any]] = {}
        rows = session.execute(
            select(
                RegistryIdentity.entity_id,
                RegistryIdentity.external_entity_type,
                RegistryIdentity.sync_status,
                RegistryIdentity.lease_expires_at,
                RegistryIdentity.last_synced_at,
            ).where(
                RegistryIdentity.entity_type == entity_type,
                RegistryIdentity.registry_name == self.adapter.name,
                RegistryIdentity.entity_id.in_(entity_ids),
            )
        )
        for row in rows:
            states.setdefault(row.entity_id, {})[row.external_entity_type] = row
        return states

    def due_for_retry(
        self, entity_type: str, *, base_seconds: float = 300, cap_seconds: float = 86_400
    ) -> list[str]:
        """Failed entities whose backoff has passed: a step that failed after n attempts waits
        base * 2^(n-1) seconds (at most cap) since it failed before it is tried again."""
        now = self._clock()
        failed = set(self.select(entity_type, "failed"))
        if not failed:
            return []
        with self._sessions() as session:
            rows = session.scalars(
                select(RegistryIdentity).where(
                    RegistryIdentity.entity_type == entity_type,
                    RegistryIdentity.registry_name == self.adapter.name,
                    RegistryIdentity.sync_status.in_(
                        [SyncStatus.ERROR, SyncStatus.UNKNOWN, SyncStatus.SYNCING]
                    ),
                )
            ).all()
        due: dict[str, bool] = {}
        for row in rows:
            if row.entity_id not in failed:
                continue
            wait = min(cap_seconds, base_seconds * 2 ** max(0, row.attempt_count - 1))
            ready = row.updated_at + timedelta(seconds=wait) <= now
            due[row.entity_id] = due.get(row.entity_id, True) and ready
        return [entity_id for entity_id in sorted(failed) if due.get(entity_id, True)]

    # -- running ------------------------------------------------------------------------------------

    def sync_all(self, which: Literal["pending", "failed"] = "pending") -> SyncReport:
        """Every selected entity of every type, parents' types first."""
        report = SyncReport()
        for entity_type in self.entity_order():
            selected = self.select(entity_type, which)
            if self.adapter.entities[entity_type].sequential_by is not None:
                # One at a time, in order across the whole selection: ordered once, no thread pool.
                report.results.extend(self.sync_entities(entity_type, selected))
                continue
            # In chunks: one chunk's tasks and sessions at a time, not one per entity of a whole backlog.
            for start in range(0, len(selected), SYNC_CHUNK):
                report.results.extend(self.sync_entities(entity_type, selected[start : start + SYNC_CHUNK]))
        return report

    def sync_entities(self, entity_type: str, entity_ids: Sequence[str]) -> list[EntityResult]:
        if not entity_ids:
            return []
        spec = self.adapter.entities[entity_type]
        if spec.sequential_by is not None:
            ordered = self._ordered(entity_type, entity_ids, spec.sequential_by)
            if spec.ordered_step is None or self.concurrency == 1 or len(ordered) == 1:
                return [self.sync_entity(entity_type, i) for i in ordered]
            return self._sync_pipelined(entity_type, ordered)
        if self.concurrency == 1 or len(entity_ids) == 1:
            return [self.sync_entity(entity_type, i) for i in entity_ids]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(entity_ids))) as pool:
            return list(pool.map(lambda i: self.sync_entity(entity_type, i), entity_ids))

    def _sync_pipelined(self, entity_type: str, ordered: list[str]) -> list[EntityResult]:
        """Entities whose `ordered_step` must go one at a time in order (`ordered`: earliest first).
        Only that step waits for the entity before: the steps before it go ahead in the thread pool for
        the whole selection, earliest first, and the steps after it follow in the pool.
        (The adapter's rules keep order values unique: Isometric's validation blocks a second credit
        batch ending on the same day, before any request.)

        At a go-live backlog of 178 credit batches (5 requests each, 50-150 ms answers) one at a time took
        ~1 s a batch, a third of the whole sync's time at 50 req/s (benchmarks.throughput --scale 8000)."""
        spec = self.adapter.entities[entity_type]
        steps, cut = spec.steps, spec.external_types.index(str(spec.ordered_step))
        results: dict[str, EntityResult] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            ahead = {i: pool.submit(self.sync_entity, entity_type, i, steps=cut) for i in ordered}
            following = {}
            for i in ordered:
                result = ahead.pop(i).result()
                if result.status not in REACHED:  # stopped before the ordered step: that is its result
                    results[i] = result
                    continue
                result = self.sync_entity(entity_type, i, steps=cut + 1)
                if result.status in REACHED and cut + 1 < len(steps):
                    following[i] = pool.submit(self.sync_entity, entity_type, i)
                else:
                    results[i] = result
            results |= {i: future.result() for i, future in following.items()}
        return [results[i] for i in ordered]

    def sync_entity(self, entity_type: str, entity_id: str, *, steps: int | None = None) -> EntityResult:
        """Take one entity as far as it goes; with `steps`, no further than its first `steps` steps."""
        entity_id = str(entity_id)
        try:
            return self._sync_entity(entity_type, entity_id, steps)
        except Exception as exc:  # one bad entity never stops the others (invariant 4)
            logger.exception("%s %s: unexpected failure", entity_type, entity_id)
            return EntityResult(
                entity_type,
                entity_id,
                "error",
                message=self._redact(f"{entity_type} {entity_id}: internal error: {exc!r}"),
            )

    def _sync_entity(self, entity_type: str, entity_id: str, steps: int | None = None) -> EntityResult:
        spec = self.adapter.entities[entity_type]
        with self._sessions() as session:
            try:
                entity = self._load(session, entity_type, entity_id)
            except UNREADABLE as exc:
                session.rollback()
                return self._block_unreadable(session, spec, entity_type, entity_id, exc)
            if entity is None:
                return EntityResult(
                    entity_type,
                    entity_id,
                    "missing",
                    message=f"{entity_type} {entity_id} is not in the DMRV database",
                )
            if not self.adapter.is_ready(entity_type, entity):
                return EntityResult(
                    entity_type,
                    entity_id,
                    "not_ready",
                    message=f"{entity_type} {entity_id} is not ready to sync yet",
                )
            identities = [
                self.identities.get_or_create_registry_identity(
                    entity_type, entity_id, self.adapter.name, step.external_entity_type
                )
                for step in spec.steps
            ]
            issues = self.adapter.validate(entity_type, entity, self._clock())
            result = EntityResult(entity_type, entity_id, "synced", issues=issues)
            blockers = [str(i) for i in issues if i.severity == Severity.ERROR]
            blockers += self._unsynced_parents(entity_type, entity, session)
            open_steps = [r for r in identities if r.sync_status not in HAS_OBJECT]
            if blockers and open_steps:
                return self._block(result, spec, open_steps[0], blockers)

            for step, identity in zip(spec.steps[:steps], identities[:steps], strict=True):
                ctx = StepContext(
                    entity_type=entity_type,
                    entity_id=entity_id,
                    entity=entity,
                    session=session,
                    step=step,
                    reference=supplier_reference(step.external_entity_type, entity_id),
                    external_ids=self._external_ids,
                    identity_metadata=dict(identity.sync_metadata or {}),
                )
                if identity.sync_status in HAS_OBJECT:
                    step_result = self._check_drift(ctx, identity, blocked=bool(blockers))
                else:
                    step_result = self._run_step(ctx, identity, issues)
                result.steps.append(step_result)
                if step_result.status not in HAS_OBJECT:
                    result.status = _entity_status(step_result)
                    result.message = step_result.error
                    break
                if step_result.status == SyncStatus.DRIFTED:
                    result.status = "drifted"
                    result.message = step_result.error
            if blockers and result.status in ("synced", "drifted"):
                result.message = "; ".join(blockers)
            return result

    def _run_step(self, ctx: StepContext, identity: RegistryIdentity, issues: list[Issue]) -> StepResult:
        step = ctx.step.external_entity_type
        claim = self.identities.mark_syncing(identity.id, self.holder, without_object=True)
        if claim is None:
            now = self.identities.get_identity(
                ctx.entity_type, ctx.entity_id, self.adapter.name, identity.external_entity_type
            )
            if now is not None and now.sync_status in HAS_OBJECT:
                # Another worker created it since this one read the row: go on with the next step.
                return StepResult(
                    step, now.sync_status, "unchanged", now.external_id, attempts=now.attempt_count
                )
            return StepResult(
                step, "syncing", "busy", error=f"{_label(ctx)}: another worker is syncing it right now"
            )
        token = current_identity.set(identity.id)
        try:
            try:
                payload = self.adapter.build_payload(ctx)
            except MissingExternalId as exc:
                return self._fail(claim, ctx, f"{_label(ctx)}: {exc}", unknown=claim.reconcile)
            except Exception as exc:  # a record validation did not anticipate: fail it, release the lease
                logger.exception("%s: could not build the payload", _label(ctx))
                return self._fail(
                    claim, ctx, f"{_label(ctx)}: cannot build the request: {exc}", unknown=claim.reconcile
                )
            digest = payload_hash(payload)
            metadata = self._metadata(ctx, issues)
            if claim.reconcile:
                try:
                    found = self.adapter.reconcile(ctx, payload, claim.unsettled_since)
                except RegistryError as exc:
                    # Still unknown: never resend blind.
                    return self._fail(claim, ctx, self._explain(ctx, exc, reconciling=True), unknown=True)
                if found is not None:
                    self.identities.mark_synced(
                        claim, found.external_id, payload_hash=digest, metadata={**metadata, **found.metadata}
                    )
                    return StepResult(
                        step, SyncStatus.SYNCED, "reconciled", found.external_id, attempts=claim.attempt
                    )
            try:
                outcome = self.adapter.execute(ctx, payload)
            except OutcomeUnknown as exc:
                return self._fail(claim, ctx, self._explain(ctx, exc), unknown=True)
            except RegistryError as exc:
                return self._fail(claim, ctx, self._explain(ctx, exc), unknown=False)
            except (
                Exception
            ) as exc:  # a bug after the request may have left: treat as unknown, never resend blind
                logger.exception("%s: unexpected error in step %s", _label(ctx), step)
                return self._fail(claim, ctx, f"{_label(ctx)}: internal error: {exc!r}", unknown=True)
            self.identities.mark_synced(
                claim, outcome.external_id, payload_hash=digest, metadata={**metadata, **outcome.metadata}
            )
            action = {"link": "linked", "lookup": "found", "submit": "submitted"}.get(
                ctx.step.capability, "created"
            )
            return StepResult(step, SyncStatus.SYNCED, action, outcome.external_id, attempts=claim.attempt)
        except LeaseLost as exc:
            return StepResult(step, "syncing", "busy", error=str(exc))
        finally:
            current_identity.reset(token)

    def _check_drift(self, ctx: StepContext, identity: RegistryIdentity, *, blocked: bool) -> StepResult:
        """A step already in the registry: push the change if the API allows, else flag it drifted."""
        step = ctx.step.external_entity_type
        external_id = identity.external_id
        try:
            payload = self.adapter.build_payload(ctx)
        except MissingExternalId:
            return StepResult(
                step, identity.sync_status, "unchanged", external_id, attempts=identity.attempt_count
            )
        digest = payload_hash(payload)
        unchanged = digest is None or identity.payload_hash is None or digest == identity.payload_hash
        # A changed record that does not validate is not pushed: it stays as the registry has it.
        if unchanged or external_id is None or blocked:
            return StepResult(
                step,
                identity.sync_status,
                "unchanged",
                external_id,
                identity.last_sync_error,
                identity.attempt_count,
            )
        claim = self.identities.mark_syncing(identity.id, self.holder)
        if claim is None:
            return StepResult(
                step, "syncing", "busy", external_id, f"{_label(ctx)}: another worker is syncing it"
            )
        token = current_identity.set(identity.id)
        try:
            if ctx.step.updatable and payload is not None:
                try:
                    outcome = self.adapter.update(ctx, external_id, payload)
                except RegistryError as exc:
                    # An update of an existing object is idempotent: a failure leaves it synced, with the
                    # old data, and the change is retried next time (the hash still differs).
                    message = self._explain(ctx, exc)
                    self.identities.mark_synced(claim, external_id, status=identity.sync_status, note=message)
                    return StepResult(step, identity.sync_status, "failed", external_id, message)
                self.identities.mark_synced(claim, outcome.external_id, payload_hash=digest)
                return StepResult(step, SyncStatus.SYNCED, "updated", outcome.external_id)
            note = (
                f"{_label(ctx)} changed after it was sent to {self.adapter.name} as {external_id}, and "
                f"{self.adapter.name} does not allow updating a {step}. {ctx.step.drift_advice}".strip()
            )
            self.identities.mark_synced(claim, external_id, status=SyncStatus.DRIFTED, note=note)
            return StepResult(step, SyncStatus.DRIFTED, "drifted", external_id, note)
        except LeaseLost as exc:
            return StepResult(step, "syncing", "busy", external_id, str(exc))
        finally:
            current_identity.reset(token)

    # -- confirmation pulls -------------------------------------------------------------------------

    def confirm(self) -> list[ConfirmResult]:
        """Pull the registry's verdicts and hold the registry-owned fields locally, with lineage rows.

        Registry reads happen outside any write transaction; each entity's changes commit on their own.
        """
        target = self.adapter.confirmable()
        if target is None:
            return []
        entity_type, external_type = target
        with self._sessions() as session:
            synced = {
                row.entity_id: row.external_id
                for row in session.scalars(
                    select(RegistryIdentity).where(
                        RegistryIdentity.entity_type == entity_type,
                        RegistryIdentity.registry_name == self.adapter.name,
                        RegistryIdentity.external_entity_type == external_type,
                        RegistryIdentity.sync_status == SyncStatus.SYNCED,
                    )
                )
                if row.external_id
            }
            confirmations = self.adapter.pull_confirmations(session, synced)
        allowed = self.adapter.registry_owned_fields.get(entity_type, frozenset())
        results = []
        for confirmation in confirmations:
            with self._sessions.begin() as session:
                entity = self._load(session, confirmation.entity_type, confirmation.entity_id)
                if entity is None:
                    continue
                changed = apply_registry_values(
                    session,
                    confirmation.entity_type,
                    entity,
                    confirmation.values,
                    allowed_fields=allowed,
                    source=confirmation.source,
                    run_id=self.identities.run_id,
                )
            if confirmation.error and confirmation.error_step:
                self._record_verdict_error(confirmation)
            results.append(
                ConfirmResult(confirmation.entity_type, confirmation.entity_id, changed, confirmation.error)
            )
        return results

    def _record_verdict_error(self, confirmation: Confirmation) -> None:
        assert confirmation.error_step is not None
        identity = self.identities.get_or_create_registry_identity(
            confirmation.entity_type, confirmation.entity_id, self.adapter.name, confirmation.error_step
        )
        claim = self.identities.mark_syncing(identity.id, self.holder)
        if claim is not None:
            with contextlib.suppress(LeaseLost):
                self.identities.mark_error(claim, self._redact(confirmation.error or ""))

    # -- planning -----------------------------------------------------------------------------------

    def plan(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        """What a sync would send for this entity, step by step, without sending anything.

        For steps already in the registry, the difference between what we would send now and the
        registry's current object.
        """
        spec = self.adapter.entities[entity_type]
        with self._sessions() as session:
            entity = self._load(session, entity_type, str(entity_id))
            if entity is None:
                raise LookupError(f"{entity_type} {entity_id} is not in the DMRV database")
            issues = self.adapter.validate(entity_type, entity, self._clock())
            plan: dict[str, Any] = {
                "registry": self.adapter.name,
                "entity_type": entity_type,
                "entity_id": str(entity_id),
                "ready": self.adapter.is_ready(entity_type, entity),
                "issues": [{"severity": i.severity.value, "text": str(i)} for i in issues],
                "unsynced_parents": self._unsynced_parents(entity_type, entity, session),
                "steps": [],
            }
            for step in spec.steps:
                identity = self.identities.get_identity(
                    entity_type, str(entity_id), self.adapter.name, step.external_entity_type
                )
                ctx = StepContext(
                    entity_type,
                    str(entity_id),
                    entity,
                    session,
                    step,
                    supplier_reference(step.external_entity_type, str(entity_id)),
                    self._external_ids,
                )
                entry: dict[str, Any] = {
                    "external_entity_type": step.external_entity_type,
                    "capability": step.capability.value,
                    "supplier_reference_id": ctx.reference,
                    "status": identity.sync_status.value if identity else "pending",
                    "external_id": identity.external_id if identity else None,
                }
                try:
                    entry["payload"] = self.adapter.build_payload(ctx)
                except MissingExternalId as exc:
                    entry["payload"] = None
                    entry["waiting_for"] = str(exc)
                if identity is not None and identity.sync_status in HAS_OBJECT and identity.external_id:
                    current = self.adapter.fetch(ctx, identity.external_id)
                    entry["registry_object"] = current
                    entry["differences"] = _differences(entry.get("payload"), current)
                    entry["changed_since_sync"] = payload_hash(entry.get("payload")) != identity.payload_hash
                plan["steps"].append(entry)
            return plan

    # -- helpers ------------------------------------------------------------------------------------

    def _ordered(self, entity_type: str, entity_ids: Sequence[str], attribute: str) -> list[str]:
        """`entity_ids` in the order of `attribute` (missing values last), then creation, then ID."""
        model = ENTITY_MODELS[entity_type]
        column = getattr(model, attribute)
        wanted = set(entity_ids)
        with self._sessions() as session:
            rows = session.execute(
                select(model.id).order_by(column.is_(None), column, model.created_at, model.id)
            )
            return [str(key) for (key,) in rows if str(key) in wanted]

    def _rows(self, session: Session, model: Any) -> Iterator[list[tuple[str, Any]]]:
        """Every row of `model` as (id, entity), oldest change first, in chunks of ROWS_PER_CHUNK; the
        entity is None for a row the database driver cannot read (e.g. text in a date column on
        SQLite), so one such row never hides the others.

        Keyset pagination on (updated_at, id), like the sensors' read: each chunk starts after the
        (updated_at, id) of the last row of the one before, as it was read (a row changed meanwhile
        moves to the end, and none is skipped); when that row could not be read, the database looks
        its updated_at up by its id."""
        order = (model.updated_at, model.id)
        after: list[Any] = []
        while True:
            try:
                entities = list(
                    session.scalars(select(model).where(*after).order_by(*order).limit(ROWS_PER_CHUNK))
                )
                chunk = [(str(entity.id), entity) for entity in entities]
                keys = [entity.id for entity in entities]
            except UNREADABLE:
                session.rollback()
                keys = list(
                    session.scalars(select(model.id).where(*after).order_by(*order).limit(ROWS_PER_CHUNK))
                )
                chunk = []
                for key in keys:
                    try:
                        chunk.append((str(key), session.get(model, key)))
                    except UNREADABLE:
                        session.rollback()
                        chunk.append((str(key), None))
            if len(keys) == ROWS_PER_CHUNK:  # where the next chunk starts (read before the caller goes on)
                last_key, last = keys[-1], chunk[-1][1]
                updated_at = (
                    last.updated_at
                    if last is not None
                    else select(model.updated_at).where(model.id == last_key).scalar_subquery()
                )
                after = [model.after(updated_at, last_key)]
            if chunk:
                yield chunk
            if len(keys) < ROWS_PER_CHUNK:
                return

    def _block_unreadable(
        self, session: Session, spec: EntitySpec, entity_type: str, entity_id: str, exc: Exception
    ) -> EntityResult:
        """A row that cannot be loaded: an error on it naming each field that cannot be read; nothing sent."""
        model = ENTITY_MODELS[entity_type]
        problems = []
        for column in sa_inspect(model, raiseerr=True).columns:
            try:
                session.execute(select(column).where(model.id == uuid.UUID(entity_id))).all()
            except UNREADABLE as field_exc:
                session.rollback()
                problems.append(
                    f"field {column.key} holds a value that is not a valid {column.type} ({field_exc})"
                )
        blocker = (
            f"{entity_type} {entity_id}: cannot be read from the DMRV database: "
            f"{'; '.join(problems) or repr(exc)}. Fix the value in the database; nothing was sent"
        )
        identities = [
            self.identities.get_or_create_registry_identity(
                entity_type, entity_id, self.adapter.name, step.external_entity_type
            )
            for step in spec.steps
        ]
        open_steps = [r for r in identities if r.sync_status not in HAS_OBJECT]
        result = EntityResult(entity_type, entity_id, "error", message=blocker)
        if not open_steps:
            return result
        return self._block(result, spec, open_steps[0], [blocker])

    def _load(self, session: Session, entity_type: str, entity_id: str) -> Any:
        model = ENTITY_MODELS[entity_type]
        try:
            key = uuid.UUID(entity_id)
        except ValueError:
            return None
        return session.get(model, key)

    def _external_id(self, entity_type: str, entity_id: str, external_entity_type: str) -> str | None:
        return self.identities.get_external_id(
            entity_type, entity_id, self.adapter.name, external_entity_type
        )

    def _unsynced_parents(self, entity_type: str, entity: Any, session: Session) -> list[str]:
        """One message per parent that is not fully in the registry (invariant 2)."""
        messages = []
        parents = list(self.adapter.parents(entity_type, entity))
        # One query per parent type (a credit batch has dozens of applications), not one per parent.
        synced = {
            (parent_type, entity_id)
            for parent_type in {p.entity_type for p in parents}
            for entity_id in self.identities.fully_synced(
                parent_type,
                [p.entity_id for p in parents if p.entity_type == parent_type],
                self.adapter.name,
                self.adapter.entities[parent_type].external_types,
            )
        }
        for parent in parents:
            if (parent.entity_type, str(parent.entity_id)) in synced:
                continue
            parent_entity = self._load(session, parent.entity_type, parent.entity_id)
            if parent_entity is not None and not self.adapter.is_ready(parent.entity_type, parent_entity):
                state = getattr(getattr(parent_entity, "status", None), "value", "not ready")
                messages.append(
                    f"{entity_type} {entity.id}: its parent {parent.entity_type} {parent.entity_id} is not ready "
                    f"for {self.adapter.name} yet (status {state}); this record is synced after it"
                )
                continue
            summary = self.identities.get_entity_sync_summary(parent.entity_type, parent.entity_id).get(
                self.adapter.name, {}
            )
            problems = [
                f"{t}: {s['status']}" + (f" ({_clip(s['error'])})" if s.get("error") else "")
                for t, s in summary.items()
                if s["status"] not in ("synced", "drifted")
            ] or ["never synced"]
            messages.append(
                f"{entity_type} {entity.id}: its parent {parent.entity_type} {parent.entity_id} is not in "
                f"{self.adapter.name} yet ({'; '.join(problems)}). Sync the parent first (dmrv-sync sync pending, "
                "or fix it and run dmrv-sync sync failed); this record is retried after it."
            )
        return messages

    def _block(
        self, result: EntityResult, spec: EntitySpec, identity: RegistryIdentity, blockers: list[str]
    ) -> EntityResult:
        message = self._redact("; ".join(blockers))
        # Never over a step another worker has put in the registry meanwhile: an error there would forget it.
        claim = self.identities.mark_syncing(identity.id, self.holder, without_object=True)
        if claim is None:
            result.status = "busy"
            result.message = message
            return result
        with contextlib.suppress(LeaseLost):
            self.identities.mark_error(
                claim,
                message,
                outcome_unknown=claim.reconcile,  # blocking must not forget that an earlier send is unsettled
                metadata={"issues": [str(i) for i in result.issues], "blocked": True},
            )
        result.status = "unknown" if claim.reconcile else "error"
        result.message = message
        result.steps.append(
            StepResult(identity.external_entity_type, result.status, "blocked", error=message)
        )
        return result

    def _fail(self, claim: Claim, ctx: StepContext, message: str, *, unknown: bool) -> StepResult:
        message = self._redact(message)
        self.identities.mark_error(claim, message, outcome_unknown=unknown)
        status = SyncStatus.UNKNOWN if unknown else SyncStatus.ERROR
        return StepResult(
            ctx.step.external_entity_type, status, "failed", claim.external_id, message, claim.attempt
        )

    def _explain(self, ctx: StepContext, exc: RegistryError, *, reconciling: bool = False) -> str:
        """The stored message: which entity, what the registry said, what to do next."""
        label = _label(ctx)
        if reconciling:
            return (
                f"{label}: an earlier attempt may have created it, and looking it up failed ({exc}); "
                "nothing was re-sent. Retry later (dmrv-sync sync failed): it is looked up again first."
            )
        if isinstance(exc, OutcomeUnknown):
            return (
                f"{label}: sent, but no answer came back ({exc}). It is looked up by its reference "
                f"{ctx.reference} before anything is re-sent (dmrv-sync sync failed, or the hourly retry)."
            )
        if isinstance(exc, ValidationRejected):
            return f"{label}: {self.adapter.name} rejected it: {exc.summary}. Fix the record, then retry (dmrv-sync sync failed)."
        if isinstance(exc, AuthError):
            return f"{label}: {self.adapter.name} refused the credentials ({exc}). Check the {self.adapter.name} credentials in the environment, then retry."
        if isinstance(exc, NotFound):
            return f"{label}: {exc}. Then retry (dmrv-sync sync failed)."
        if isinstance(exc, RateLimited | TransientError):
            return f"{label}: {self.adapter.name} is unavailable ({exc}); nothing was created. Retry later (dmrv-sync sync failed)."
        return f"{label}: {exc}"

    def _metadata(self, ctx: StepContext, issues: list[Issue]) -> dict[str, Any]:
        warnings = [str(i) for i in issues if i.severity == Severity.WARNING]
        metadata: dict[str, Any] = {"supplier_reference_id": ctx.reference}
        if warnings:
            metadata["warnings"] = warnings
        return metadata

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


class CallAuditor:
    """The registry client's observer: one audit row per HTTP attempt, against the identity the calling
    thread is working on (set by the engine around each step)."""

    def __init__(self, identities: IdentityService) -> None:
        self.identities = identities

    def __call__(self, record: Any) -> None:
        outcome = {"ok": AuditOutcome.OK, "unknown": AuditOutcome.UNKNOWN}.get(
            record.outcome, AuditOutcome.ERROR
        )
        self.identities.record_call(
            current_identity.get(),
            "request",
            outcome,
            http_method=record.method,
            http_path=record.path,
            http_status=record.status_code,
            duration_ms=record.duration_ms,
            error=record.error,
            details={
                "attempt": record.attempt,
                "will_retry": record.will_retry,
                "sent_at": round(record.sent_at, 6),
            },
        )


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(ctx: StepContext) -> str:
    return f"{ctx.entity_type} {ctx.entity_id} ({ctx.step.external_entity_type})"


def _entity_status(step: StepResult) -> EntityStatus:
    if step.action == "busy":
        return "busy"
    return "unknown" if step.status == SyncStatus.UNKNOWN else "error"


def _differences(payload: dict[str, Any] | None, current: dict[str, Any] | None) -> dict[str, Any]:
    """Fields of the payload whose value differs from the registry's object: {field: {local, registry}}."""
    if not payload or current is None:
        return {}
    diff: dict[str, Any] = {}
    for key, local in payload.items():
        remote = current.get(key)
        if isinstance(local, dict) and isinstance(remote, dict):
            if any(remote.get(k) != v for k, v in local.items() if v is not None):
                diff[key] = {"local": local, "registry": remote}
        elif key in current and _normalise(local) != _normalise(remote):
            diff[key] = {"local": local, "registry": remote}
    return diff


def _normalise(value: Any) -> Any:
    if isinstance(value, str) and value.endswith("Z"):
        return value[:-1] + "+00:00"
    return value
