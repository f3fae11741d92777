"""End to end through the real Dagster stack (the issue's acceptance test): a PostgreSQL-backed instance,
`dagster-daemon` and `dagster-webserver` and the Certify emulator as separate processes, the DMRV
database on PostgreSQL, and the CLI as a user runs it.

`demo seed --scale 200` → the sensors (running by default, ticked by the daemon) push every valid
entity in ranged runs, parents first; nothing is created twice; the invalid records are failed
partitions whose failure names the entity and the problem. After the data is fixed, a backfill of the
failed partitions, launched through the webserver's GraphQL API as the UI does, turns them green.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from dmrv_sync.db.models import (
    Application,
    ApplicationStatus,
    CreditBatch,
    CreditBatchStatus,
    Facility,
    FeedstockType,
    ProductionRun,
    ProductionRunStatus,
)
from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import RegistryIdentity, SyncStatus
from dmrv_sync.registries.catalog import REGISTRY_ENTITIES
from dmrv_sync_tests.fixtures.dagster import (
    ENTITY_SENSORS,
    DagsterStack,
    launch_backfill,
    partition_status,
    sync_stats,
    wait_for_backfill,
    wait_until_settled,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ASSETS = {entity_type: spec.asset_name for entity_type, spec in REGISTRY_ENTITIES["isometric"].items()}
# A fragment of the validation message each seeded problem must produce (the seed's wording → the rule's).
EXPECTED_MESSAGE = {
    "H/Corg": "H/Corg molar ratio must be below 0.5",
    "dry mass": "biochar_dry_mass_kg",
    "latitude": "latitude = 123.4: must be within -90..90",
    "in the future": "is in the future",
    "before its production run": "is before its production run",
    "no applications": "a credit batch needs at least one applied application",
}
INVALID_LINE = re.compile(r"^\s+(\w+) ([0-9a-f-]{36}): (.+)$")


def test_sensors_push_everything_and_a_backfill_of_failed_partitions_turns_them_green(
    dagster_stack: DagsterStack, figures: list[str]
) -> None:
    stack = dagster_stack
    started = time.monotonic()

    # --- the user's commands ----------------------------------------------------------------------
    stack.cli("db", "upgrade")
    seeded = stack.cli("demo", "seed", "--scale", "200").stdout
    invalid = {
        match.group(2): (match.group(1), match.group(3))
        for match in map(INVALID_LINE.match, seeded.splitlines())
        if match
    }
    assert len(invalid) == 6, seeded
    stack.cli("demo", "link")
    seeded_at = time.time()
    world = World(stack.dmrv_db_url, invalid)

    # --- the daemon's sensors push everything, parents first, in ranged runs -----------------------
    wait_until_settled(stack, since=seeded_at, timeout=240)
    pushed_in = time.monotonic() - started

    sensor_runs = [r.dagster_run for r in stack.runs() if "dmrv/entity_type" in r.dagster_run.tags]
    per_type = {t: sum(1 for r in sensor_runs if r.tags["dmrv/entity_type"] == t) for t in ENTITY_SENSORS}
    assert all(per_type.values()), per_type
    # Ranged runs, not one per entity (200 applications): a tick that meets a record still waiting for
    # its parent sends what came before it, so a type may take a few runs, never one per record.
    assert per_type["application"] <= 5 and sum(per_type.values()) <= 15, per_type
    assert all(r.tags.get("dagster/sensor_name") for r in sensor_runs), "every run comes from a sensor"

    for entity_type in ENTITY_SENSORS:
        ready, tainted = world.ready(entity_type), world.tainted(entity_type)
        synced = world.fully_synced(entity_type)
        assert ready - tainted <= synced, (
            f"valid {entity_type} records not synced: {ready - tainted - synced}"
        )
        assert not synced & tainted
        materialized, failed = partition_status(stack, entity_type, ASSETS[entity_type])
        assert materialized == ready - tainted, entity_type
        assert failed == tainted, f"{entity_type}: failed partitions {failed} != blocked records {tainted}"
    assert {i for i, (t, _) in invalid.items()} <= set().union(*(world.tainted(t) for t in ENTITY_SENSORS))
    assert world.tainted("production_run") and world.tainted("application") and world.tainted("credit_batch")

    stats = stack.emulator.admin.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0, stats
    status = stack.cli("status", "--json").stdout
    assert '"error"' in status and '"synced"' in status

    # Each invalid record's partition failed with a message naming it and its problem.
    for entity_id, (entity_type, problem) in invalid.items():
        line = failure_line(stack, entity_type, entity_id)
        fragment = next(f for key, f in EXPECTED_MESSAGE.items() if key in problem)
        assert fragment in line, f"{entity_type} {entity_id} ({problem}): {line}"
    # A record blocked by its parent says which parent.
    blocked_app = next(iter(world.tainted("application") - set(invalid)))
    assert "its parent production_run" in failure_line(stack, "application", blocked_app)

    # --- the user pauses the sensors (the UI's toggle), fixes the data, backfills what failed ------
    for entity_type in ENTITY_SENSORS:
        assert stack.set_sensor(f"{entity_type}_sensor", running=False) == "STOPPED"

    # A tick the daemon started before the toggle still finishes; had it read the fixed records, they
    # would have been consumed without a run. So, like a careful user, fix only once none is in flight.
    def no_tick_in_flight() -> bool:
        from dagster._core.scheduler.instigation import TickStatus

        return all(not t or t[0].status != TickStatus.STARTED for t in stack.sensor_ticks(limit=1).values())

    stack.wait_for("sensor ticks in flight to finish", no_tick_in_flight, timeout=120)
    empty_batch = world.fix()
    failed_before = {t: partition_status(stack, t, ASSETS[t])[1] for t in ENTITY_SENSORS}
    to_backfill = {t: keys for t, keys in failed_before.items() if keys}
    assert set(to_backfill) == {"production_run", "application", "credit_batch"}

    backfill_started = time.monotonic()
    backfill_id = launch_backfill(
        stack,
        {ASSETS[t]: [(key, key) for key in sorted(keys)] for t, keys in to_backfill.items()},
        "failed partitions after the data fix",
    )
    final = wait_for_backfill(stack, backfill_id, timeout=300)
    backfill_runs = stack.runs(**{"dagster/backfill": backfill_id})
    assert backfill_runs, "the daemon's backfill daemon launched runs"
    assert final in ("COMPLETED_FAILED", "FAILED", "COMPLETED"), "the empty credit batch fails again"

    for entity_type, keys in to_backfill.items():
        materialized, failed = partition_status(stack, entity_type, ASSETS[entity_type])
        still_failing = {empty_batch} if entity_type == "credit_batch" else set()
        assert failed == still_failing, f"{entity_type}: still failed after the backfill: {failed}"
        assert keys - still_failing <= materialized, f"{entity_type}: backfilled partitions not green"
        assert keys - still_failing <= world.fully_synced(entity_type), entity_type
    assert "at least one applied application" in failure_line(stack, "credit_batch", empty_batch)
    for entity_type in ENTITY_SENSORS:
        expected = world.ready(entity_type) - ({empty_batch} if entity_type == "credit_batch" else set())
        assert world.fully_synced(entity_type) == expected, entity_type
    stats = stack.emulator.admin.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0, stats
    backfilled_in = time.monotonic() - backfill_started

    # --- the sensors back on: the fixed records come back as changed, and nothing is sent twice ----
    objects_before = stats["objects"]
    resumed_at = time.time()
    for entity_type in ENTITY_SENSORS:
        assert stack.set_sensor(f"{entity_type}_sensor", running=True) == "RUNNING"
    # The fixed runs and applications have a new updated_at: their sensors re-run those partitions.
    wait_until_settled(
        stack, since=resumed_at, expect_runs_for=("production_run", "application"), timeout=180
    )
    stats = stack.emulator.admin.stats()
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0, stats
    assert stats["objects"] == objects_before, "re-running synced records created nothing"
    assert sync_stats(stack)["isometric"]["production_batch"] == {
        "synced": len(world.ready("production_run"))
    }

    figures.append(
        f"dagster e2e (scale 200, PostgreSQL, daemon): sensors settled in {pushed_in:.0f}s with runs per "
        f"type {per_type}; backfill of {sum(len(k) for k in to_backfill.values())} failed partitions in "
        f"{len(backfill_runs)} runs took {backfilled_in:.0f}s ({final}); total {time.monotonic() - started:.0f}s"
    )


def failure_line(stack: DagsterStack, entity_type: str, entity_id: str) -> str:
    """The line naming `entity_id` in the STEP_FAILURE (dg.Failure description) of its latest failed run."""
    import dagster as dg

    records = stack.instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    asset = ["isometric", ASSETS[entity_type]]
    for record in records:  # newest first
        run = record.dagster_run
        if run.tags.get("dmrv/entity_type") != entity_type and not (
            run.asset_selection and any(list(k.path) == asset for k in run.asset_selection)
        ):
            continue
        for text in stack.step_failures(run.run_id):
            for line in text.splitlines():
                if entity_id in line:
                    return line
    raise AssertionError(f"no failed run names {entity_type} {entity_id}\n{stack.diagnostics()}")


class World:
    """The DMRV database as the test sees it: which records are ready, which are blocked, which synced."""

    def __init__(self, db_url: str, invalid: dict[str, tuple[str, str]]) -> None:
        self.sessions = get_session_factory(db_url)
        self.invalid = invalid
        # As seeded: confirmation pulls (the hourly schedule) may move synced batches on later.
        self._ready = {entity_type: self._ready_now(entity_type) for entity_type in ENTITY_SENSORS}

    def ready(self, entity_type: str) -> set[str]:
        """Records the trigger table sends, as they were seeded."""
        return set(self._ready[entity_type])

    def _ready_now(self, entity_type: str) -> set[str]:
        model: Any
        condition: Any
        model, condition = {
            "facility": (Facility, True),
            "feedstock_type": (FeedstockType, True),
            "production_run": (ProductionRun, ProductionRun.status == ProductionRunStatus.COMPLETE),
            "application": (Application, Application.status == ApplicationStatus.APPLIED),
            "credit_batch": (CreditBatch, CreditBatch.status == CreditBatchStatus.PENDING),
        }[entity_type]
        with self.sessions() as session:
            return {str(i) for i in session.scalars(select(model.id).where(condition))}

    def tainted(self, entity_type: str) -> set[str]:
        """Records that cannot reach the registry: invalid, or standing on an invalid record."""
        bad = {i for i, (t, _) in self.invalid.items() if t == entity_type}
        with self.sessions() as session:
            if entity_type == "application":
                bad_runs = [uuid.UUID(i) for i in self.tainted("production_run")]
                bad |= {
                    str(i)
                    for i in session.scalars(
                        select(Application.id).where(
                            Application.production_run_id.in_(bad_runs),
                            Application.status == ApplicationStatus.APPLIED,
                        )
                    )
                }
            if entity_type == "credit_batch":
                bad_apps = self.tainted("application")
                for batch in session.scalars(select(CreditBatch)):
                    if any(str(a.id) in bad_apps for a in batch.applications):
                        bad.add(str(batch.id))
        return bad

    def fully_synced(self, entity_type: str) -> set[str]:
        steps = set(REGISTRY_ENTITIES["isometric"][entity_type].external_types)
        rows: dict[str, set[str]] = {}
        with self.sessions() as session:
            for row in session.scalars(
                select(RegistryIdentity).where(
                    RegistryIdentity.entity_type == entity_type,
                    RegistryIdentity.registry_name == "isometric",
                    RegistryIdentity.sync_status == SyncStatus.SYNCED,
                )
            ):
                rows.setdefault(row.entity_id, set()).add(row.external_entity_type)
        return {entity_id for entity_id, synced in rows.items() if synced >= steps}

    def fix(self) -> str:
        """What the user does after reading the messages; returns the credit batch left as it was (it
        has no applications: there is nothing to fix it with, and it must stay failed)."""
        today = datetime.now(UTC).date()
        empty = ""
        with self.sessions.begin() as session:
            for entity_id, (entity_type, problem) in self.invalid.items():
                key = uuid.UUID(entity_id)
                if entity_type == "production_run":
                    run = session.get(ProductionRun, key)
                    assert run is not None
                    run.h_corg_molar_ratio = 0.3
                    run.biochar_dry_mass_kg = 12_000.0
                elif entity_type == "application":
                    application = session.get(Application, key)
                    assert application is not None and application.production_run.ended_at is not None
                    if "latitude" in problem:
                        application.latitude = 49.8
                    else:
                        ended = application.production_run.ended_at.date()
                        application.application_date = min(today, ended + timedelta(days=2))
                elif entity_type == "credit_batch":
                    empty = entity_id
        assert empty
        return empty
