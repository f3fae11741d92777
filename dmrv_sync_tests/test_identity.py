"""The identity service: leases, state changes and the unique identity row, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import AuditOutcome, RegistryAuditEvent, RegistryIdentity, SyncStatus
from dmrv_sync.identity import IdentityService, LeaseLost


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def identities(session_factory, clock) -> IdentityService:  # type: ignore[no-untyped-def]
    return IdentityService(session_factory, secrets=["s3cr3t-token-value"], lease_seconds=60, clock=clock)


def _identity(
    identities: IdentityService, entity_id: str = "e1", external: str = "production_batch"
) -> RegistryIdentity:
    return identities.get_or_create_registry_identity("production_run", entity_id, "isometric", external)


def test_get_or_create_returns_the_same_row(identities: IdentityService) -> None:
    first = _identity(identities)
    second = _identity(identities)
    assert first.id == second.id
    assert first.sync_status == SyncStatus.PENDING


def test_unique_constraint_rejects_a_second_row_for_the_same_external_object(session_factory) -> None:  # type: ignore[no-untyped-def]
    key = dict(
        entity_type="application",
        entity_id="a1",
        registry_name="isometric",
        external_entity_type="storage_location",
    )
    with session_factory.begin() as session:
        session.add(RegistryIdentity(**key))
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        session.add(RegistryIdentity(**key))
    # A different external type of the same entity is a different row (two-step entities).
    with session_factory.begin() as session:
        session.add(RegistryIdentity(**{**key, "external_entity_type": "biochar_application"}))
    with session_factory() as session:
        assert len(session.scalars(select(RegistryIdentity)).all()) == 2


def test_a_live_lease_cannot_be_claimed_twice(identities: IdentityService) -> None:
    row = _identity(identities)
    claim = identities.mark_syncing(row.id, "worker-a")
    assert claim is not None and not claim.reconcile and claim.attempt == 1
    assert identities.mark_syncing(row.id, "worker-b") is None


def test_a_create_claim_is_refused_once_another_worker_has_put_the_object_in(
    identities: IdentityService,
) -> None:
    """Two runs over the same partitions: B read the row while it was pending, A created the object and
    released the lease; B's create claim must now fail, or B would create a second object."""
    seen_by_b = _identity(identities)
    assert seen_by_b.sync_status == SyncStatus.PENDING
    claim_a = identities.mark_syncing(seen_by_b.id, "worker-a", without_object=True)
    assert claim_a is not None
    identities.mark_synced(claim_a, "pbt_1AAAAAAAAAAAAAAA")

    assert identities.mark_syncing(seen_by_b.id, "worker-b", without_object=True) is None
    row = identities.get_identity("production_run", "e1", "isometric", "production_batch")
    assert (
        row is not None and row.sync_status == SyncStatus.SYNCED and row.external_id == "pbt_1AAAAAAAAAAAAAAA"
    )
    # An update of the object it now has (the drift path) may still claim it.
    assert identities.mark_syncing(seen_by_b.id, "worker-b") is not None


def test_an_expired_lease_is_taken_over_and_marked_for_reconciliation(
    identities: IdentityService, clock: FakeClock
) -> None:
    row = _identity(identities)
    crashed = identities.mark_syncing(row.id, "worker-a")
    assert crashed is not None
    clock.advance(61)
    takeover = identities.mark_syncing(row.id, "worker-b")
    assert takeover is not None
    assert takeover.reconcile, "the crashed worker may have sent the create: look it up before resending"
    assert takeover.attempt == 2
    # The crashed worker comes back late: its result must not overwrite the new holder's.
    with pytest.raises(LeaseLost):
        identities.mark_synced(crashed, "ptb_LATE000000000001")
    identities.mark_synced(takeover, "ptb_1AAAAAAAAAAAAAAA")
    assert (
        identities.get_external_id("production_run", "e1", "isometric", "production_batch")
        == "ptb_1AAAAAAAAAAAAAAA"
    )
    assert (
        identities.get_identity("production_run", "e1", "isometric", "production_batch").needs_reconciliation
        is False
    )  # type: ignore[union-attr]


def test_an_unknown_outcome_makes_the_next_claim_reconcile(identities: IdentityService) -> None:
    row = _identity(identities)
    claim = identities.mark_syncing(row.id, "w")
    assert claim is not None
    identities.mark_error(claim, "read timeout after sending POST /production_batches", outcome_unknown=True)
    assert (
        identities.get_identity("production_run", "e1", "isometric", "production_batch").sync_status
        == SyncStatus.UNKNOWN
    )  # type: ignore[union-attr]
    again = identities.mark_syncing(row.id, "w")
    assert again is not None and again.reconcile


def test_an_error_before_sending_does_not_need_reconciliation(identities: IdentityService) -> None:
    row = _identity(identities)
    claim = identities.mark_syncing(row.id, "w")
    assert claim is not None
    identities.mark_error(claim, "validation: mass must be > 0")
    again = identities.mark_syncing(row.id, "w")
    assert again is not None and not again.reconcile


def test_errors_are_stored_redacted_and_audited(identities: IdentityService, session_factory) -> None:  # type: ignore[no-untyped-def]
    row = _identity(identities)
    claim = identities.mark_syncing(row.id, "w")
    assert claim is not None
    identities.mark_error(claim, "401 for token s3cr3t-token-value")
    stored = identities.get_identity("production_run", "e1", "isometric", "production_batch")
    assert stored is not None and "s3cr3t-token-value" not in (stored.last_sync_error or "")
    with session_factory() as session:
        events = session.scalars(select(RegistryAuditEvent).order_by(RegistryAuditEvent.id)).all()
    assert [(e.operation, e.outcome) for e in events] == [
        ("claim", AuditOutcome.OK),
        ("error", AuditOutcome.ERROR),
    ]
    assert all("s3cr3t-token-value" not in (e.error or "") for e in events)


def test_fully_synced_summary_and_stats(identities: IdentityService) -> None:
    steps = ["storage_location", "biochar_application"]
    rows = [identities.get_or_create_registry_identity("application", "a1", "isometric", s) for s in steps]
    assert not identities.is_entity_fully_synced("application", "a1", "isometric", steps)
    first = identities.mark_syncing(rows[0].id, "w")
    assert first is not None
    identities.mark_synced(first, "slc_1AAAAAAAAAAAAAAA", payload_hash="abc")
    assert not identities.is_entity_fully_synced("application", "a1", "isometric", steps)
    second = identities.mark_syncing(rows[1].id, "w")
    assert second is not None
    identities.mark_synced(second, "bse_1AAAAAAAAAAAAAAA")
    assert identities.is_entity_fully_synced("application", "a1", "isometric", steps)

    summary = identities.get_entity_sync_summary("application", "a1")
    assert summary["isometric"]["storage_location"]["external_id"] == "slc_1AAAAAAAAAAAAAAA"
    assert summary["isometric"]["biochar_application"]["status"] == "synced"
    _identity(identities, "e9")
    assert identities.get_registry_sync_stats() == {
        "isometric": {
            "storage_location": {"synced": 1},
            "biochar_application": {"synced": 1},
            "production_batch": {"pending": 1},
        }
    }


def _claim_all(url: str, identity_ids: list[int], worker: int, start) -> list[int]:  # type: ignore[no-untyped-def]
    service = IdentityService(get_session_factory(url), lease_seconds=600)
    order = list(identity_ids)
    random.Random(worker).shuffle(order)
    start.wait()  # all workers race from the same moment
    return [i for i in order if service.mark_syncing(i, f"worker-{worker}") is not None]


def test_eight_concurrent_workers_claim_each_identity_exactly_once(db_url: str) -> None:
    service = IdentityService(get_session_factory(db_url))
    ids = [_identity(service, f"e{i}").id for i in range(100)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(8)
        with ctx.Pool(8) as pool:
            results = pool.starmap(_claim_all, [(db_url, ids, w, start) for w in range(8)])
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(ids), "every identity claimed exactly once across 8 workers"
    assert sum(1 for r in results if r) >= 2, "the race had more than one winner overall"


def test_a_claim_says_since_when_the_outcome_is_unsettled(
    identities: IdentityService, clock: FakeClock
) -> None:
    """A lookup taken after this moment can settle the claim: it must be when the earlier attempt ended,
    not when this claim was made (or every reconciliation would need a fresh listing pass)."""
    row = _identity(identities)
    claim = identities.mark_syncing(row.id, "w")
    assert claim is not None
    identities.mark_error(claim, "read timeout", outcome_unknown=True)
    marked_at = clock.now
    clock.advance(3600)
    again = identities.mark_syncing(row.id, "w")
    assert again is not None and again.reconcile
    assert again.unsettled_since == marked_at

    clock.advance(10)
    crashed_until = again.expires_at
    clock.advance(identities.lease_seconds + 1)
    takeover = identities.mark_syncing(row.id, "other")
    assert takeover is not None and takeover.unsettled_since == crashed_until
