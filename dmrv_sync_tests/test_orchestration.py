"""The Dagster layer in process: definitions, sensor ticks, ranged runs with per-partition truth,
validation checks, confirmation and retry jobs. (The daemon end to end lives in test_dagster_e2e.py.)"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from sqlalchemy import select

from dmrv_sync.db.models import Application, ApplicationStatus
from dmrv_sync.definitions import defs
from dmrv_sync.orchestration.assets import build_registry_assets
from dmrv_sync.orchestration.partitions import ENTITY_PARTITIONS
from dmrv_sync.orchestration.resources import DmrvDatabase, IsometricRegistry
from dmrv_sync.settings import DEMO_ACCESS_TOKEN, DEMO_CLIENT_SECRET
from dmrv_sync_tests.fixtures.sync import SyncWorld

EXPECTED_ASSETS = {
    "isometric/facility",
    "isometric/feedstock_type",
    "isometric/production_batch",
    "isometric/biochar_application",
    "isometric/ghg_statement",
    "dmrv/sync_status_report",
}


def test_definitions_wire_every_asset_job_sensor_and_schedule() -> None:
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    for job_name in ("isometric_confirm", "isometric_retry_failed", "sync_status_report_job"):
        assert defs.resolve_job_def(job_name) is not None
    sensors = {s.name for s in repository.sensor_defs}
    assert sensors == {
        f"{t}_sensor" for t in ("facility", "feedstock_type", "production_run", "application", "credit_batch")
    }
    graph = repository.asset_graph
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents["isometric/production_batch"] == {"isometric/facility", "isometric/feedstock_type"}
    assert parents["isometric/biochar_application"] == {"isometric/production_batch"}
    assert parents["isometric/ghg_statement"] == {"isometric/biochar_application"}


class Harness:
    """Drive sensors and the runs they request by hand, in process."""

    def __init__(self, world: SyncWorld, instance: dg.DagsterInstance) -> None:
        self.world = world
        self.instance = instance
        self.resources = {
            "dmrv_database": DmrvDatabase(url=world.db_url),
            "isometric_registry": IsometricRegistry(
                client_secret=DEMO_CLIENT_SECRET,
                access_token=DEMO_ACCESS_TOKEN,
                base_url=world.emulator.base_url,
                requests_per_second=1000,
            ),
        }
        self.cursors: dict[str, str | None] = {}
        self.assets = build_registry_assets()
        self.runs = 0

    def tick(self, entity_type: str) -> Any:
        sensor = defs.resolve_sensor_def(f"{entity_type}_sensor")
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(entity_type), resources=self.resources
        )
        result = sensor(context)
        if isinstance(result, dg.SensorResult):  # the sensor adds its partitions itself
            self.cursors[entity_type] = result.cursor
        return result

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        self.runs += 1
        return dg.materialize(
            self.assets,
            selection=request.asset_selection,
            instance=self.instance,
            resources=self.resources,
            tags=request.tags,
            partition_key=request.partition_key,
            raise_on_error=False,
        )

    def push(self, entity_type: str) -> list[dg.ExecuteInProcessResult]:
        result = self.tick(entity_type)
        if not isinstance(result, dg.SensorResult):
            return []
        return [self.run(request) for request in result.run_requests or []]

    def partition_status(self, entity_type: str, key: str) -> tuple[set[str], set[str]]:
        asset = dg.AssetKey(["isometric", key])
        materialized = set(self.instance.get_materialized_partitions(asset))
        from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

        cached = get_and_update_asset_status_cache_value(self.instance, asset, ENTITY_PARTITIONS[entity_type])
        failed = (
            set(
                cached.deserialize_failed_partition_subsets(
                    ENTITY_PARTITIONS[entity_type]
                ).get_partition_keys()
            )
            if cached
            else set()
        )
        return materialized, failed


def skipped(result: dg.SensorResult) -> str:
    assert isinstance(result, dg.SensorResult) and result.skip_reason is not None, result
    return result.skip_reason.skip_message or ""


@pytest.fixture
def harness(world: SyncWorld, tmp_path: Any) -> Any:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield Harness(world, instance)


def test_sensors_push_parents_first_in_ranged_runs_with_per_partition_truth(
    world: SyncWorld, harness: Harness
) -> None:
    report = world.seed(scale=40)
    world.link()
    invalid = {r.entity_id for r in report.invalid}

    # Applications wait while their production runs are on their way to the registry.
    waiting = harness.tick("application")
    assert not waiting.run_requests and "waits for its parent production_run" in skipped(waiting)

    for entity_type in ("facility", "feedstock_type", "production_run", "application", "credit_batch"):
        harness.push(entity_type)

    materialized, failed = harness.partition_status("production_run", "production_batch")
    bad_runs = {r.entity_id for r in report.invalid if r.entity_type == "production_run"}
    assert bad_runs and failed == bad_runs, "exactly the invalid runs are failed partitions"
    assert not materialized & invalid
    assert len(materialized) == len(
        world.identities(external_entity_type="production_batch", sync_status="synced")
    )

    apps_materialized, apps_failed = harness.partition_status("application", "biochar_application")
    assert {r.entity_id for r in report.invalid if r.entity_type == "application"} <= apps_failed
    assert len(apps_materialized) == len(
        world.identities(external_entity_type="biochar_application", sync_status="synced")
    )
    assert harness.runs <= 5, "one ranged run per entity type for 40 applications"

    # The failed run says which entities and why; the validation check is red with them.
    evaluations = harness.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["isometric", "production_batch"]), "validation_errors")]
    )
    assert evaluations, "the validation check ran"

    # A tick with nothing new requests nothing: a record version is never requested twice.
    nothing = harness.tick("application")
    assert not nothing.run_requests and "no application record ready" in skipped(nothing)

    # A changed record comes back, in a run over existing partitions.
    with world.sessions.begin() as session:
        application = session.scalars(
            select(Application).where(Application.status == ApplicationStatus.APPLIED)
        ).first()
        assert application is not None
        application.site_name = "Renamed in the field"
        changed_id = str(application.id)
    partitions_before = harness.instance.get_dynamic_partitions("application")
    again = harness.tick("application")
    assert isinstance(again, dg.SensorResult) and len(again.run_requests or []) == 1
    request = (again.run_requests or [])[0]
    ordered = harness.instance.get_dynamic_partitions("application")
    assert ordered == partitions_before, "a changed record adds no partition"
    start, end = (
        ordered.index(request.tags[f"dagster/asset_partition_range_{end}"]) for end in ("start", "end")
    )
    assert changed_id in ordered[start : end + 1], "the run's range covers the changed record"
    result = harness.run(request)
    assert any(
        e.event_type_value == "ASSET_MATERIALIZATION" and e.partition == changed_id for e in result.all_events
    )


def test_backfilling_failed_partitions_after_a_fix_turns_them_green(
    world: SyncWorld, harness: Harness
) -> None:
    report = world.seed(scale=20)
    world.link()
    for entity_type in ("facility", "feedstock_type", "production_run"):
        harness.push(entity_type)
    _, failed = harness.partition_status("production_run", "production_batch")
    assert failed
    from dmrv_sync.db.models import ProductionRun

    with world.sessions.begin() as session:
        for run in session.scalars(select(ProductionRun)):
            if str(run.id) in failed:
                run.h_corg_molar_ratio = 0.3
                run.biochar_dry_mass_kg = 12_000.0
    for key in sorted(failed):  # what "backfill failed partitions" launches: runs over exactly those keys
        harness.run(
            dg.RunRequest(asset_selection=[dg.AssetKey(["isometric", "production_batch"])], partition_key=key)
        )
    materialized, failed_after = harness.partition_status("production_run", "production_batch")
    assert not failed_after and failed <= materialized
    assert report.invalid


def test_confirm_and_retry_jobs(world: SyncWorld, harness: Harness) -> None:
    world.seed(scale=40, with_invalid=False)
    world.link()
    with world.engine() as engine:
        engine.sync_all("pending")
    submitted = world.identities(external_entity_type="ghg_statement_submission", sync_status="synced")
    assert submitted
    world.emulator.admin.set_statement_status(submitted[0].external_id, "VERIFIED", verifier="V")
    job = defs.resolve_job_def("isometric_confirm")
    first = job.execute_in_process(instance=harness.instance, resources=harness.resources)
    assert first.success
    observations = [e for e in first.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert len(observations) == len(submitted), (
        "each submitted statement moved its batch on (pending → submitted or verified)"
    )
    second = job.execute_in_process(instance=harness.instance, resources=harness.resources)
    assert not [e for e in second.all_events if e.event_type_value == "ASSET_OBSERVATION"], "nothing changed"

    retry = defs.resolve_job_def("isometric_retry_failed").execute_in_process(
        instance=harness.instance, resources=harness.resources
    )
    assert retry.success


def test_ready_records_before_one_waiting_for_its_parent_are_held_back_to_go_in_one_run(
    world: SyncWorld, harness: Harness
) -> None:
    """A tick that meets an application whose production run is still on its way holds the ready ones
    read before it (no small run a hand-over early), until the parent is settled or the hold expires."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from dmrv_sync.db.sync_state import RegistryIdentity, SyncStatus
    from dmrv_sync.orchestration.sensors import HOLD_FOR_PARENTS, held_since, plan_tick

    world.seed(scale=40, with_invalid=False)
    world.link()
    for entity_type in ("facility", "feedstock_type", "production_run"):
        harness.push(entity_type)
    with world.sessions() as session:
        ordered = list(
            session.execute(
                select(Application.id, Application.production_run_id)
                .where(Application.status == ApplicationStatus.APPLIED)
                .order_by(Application.updated_at, Application.id)
            )
        )
    parent = str(ordered[len(ordered) // 2][1])
    ready_before = [a for a, _ in ordered[: next(i for i, (_, p) in enumerate(ordered) if str(p) == parent)]]
    assert ready_before, "some applications come before the first one of that production run"

    def set_parent(status: SyncStatus) -> None:
        with world.sessions.begin() as session:
            session.execute(
                update(RegistryIdentity)
                .where(RegistryIdentity.entity_type == "production_run", RegistryIdentity.entity_id == parent)
                .values(sync_status=status)
            )

    def tick(cursor: str | None, now: datetime) -> tuple[list[list[str]], str | None, dict[str, Any]]:
        _, runs, new_cursor, facts = plan_tick(
            "application", cursor, world.db_url, lambda key: False, lambda: [], now=now
        )
        return runs, new_cursor, facts

    set_parent(SyncStatus.SYNCING)  # on its way: another run holds it
    # Through the sensor: a skip that says so, its cursor carrying the hold, no partition added.
    held = harness.tick("application")
    assert not held.run_requests and "held back to go in one run" in skipped(held)
    assert held_since(held.cursor) is not None
    assert harness.instance.get_dynamic_partitions("application") == []
    # Unless they make half a run already: a tick that reads up to the waiting record, where the ready
    # ones are more than half of what it read (the others are planned applications, not ready).
    with world.sessions() as session:
        every = list(session.scalars(select(Application.id).order_by(Application.updated_at, Application.id)))
    limit = every.index(next(a for a, p in ordered if str(p) == parent)) + 1
    assert len(ready_before) >= limit // 2
    _, runs, _, _ = plan_tick("application", None, world.db_url, lambda key: False, lambda: [], limit=limit)
    assert [set(r) for r in runs] == [{str(a) for a in ready_before}]

    start = datetime.now(UTC)
    runs, cursor, facts = tick(None, start)
    assert runs == [] and facts["held"] == len(ready_before)
    assert "held back" in facts["waiting"] and parent in facts["waiting"]
    assert held_since(cursor) == start

    later = start + HOLD_FOR_PARENTS / 2
    runs, still, _ = tick(cursor, later)
    assert runs == [] and held_since(still) == start, "the hold counts from its first tick"

    # The parent's run ends: every application goes, in one run.
    set_parent(SyncStatus.SYNCED)
    runs, after, facts = tick(still, later)
    assert [len(r) for r in runs] == [len(ordered)] and held_since(after) is None

    # Still on its way when the hold expires: the ready ones go without it.
    set_parent(SyncStatus.SYNCING)
    runs, _, facts = tick(still, start + HOLD_FOR_PARENTS + timedelta(seconds=1))
    assert [set(r) for r in runs] == [{str(a) for a in ready_before}]
    assert "waits for its parent" in facts["waiting"]


def test_a_tick_that_requests_nothing_still_moves_its_cursor_past_records_not_ready(
    world: SyncWorld, harness: Harness
) -> None:
    """Otherwise a thousand records that are not ready would be re-read by every tick, and the ready
    ones behind them never reached."""
    from sqlalchemy import update

    from dmrv_sync.orchestration.sensors import Position

    world.seed(scale=40, with_invalid=False)
    world.link()
    for entity_type in ("facility", "feedstock_type", "production_run"):
        harness.push(entity_type)
    with world.sessions.begin() as session:
        session.execute(update(Application).values(status=ApplicationStatus.PLANNED))
        last = session.scalars(
            select(Application.id).order_by(Application.updated_at.desc(), Application.id.desc())
        ).first()
    result = harness.tick("application")
    assert not result.run_requests and "no application record ready" in skipped(result)
    position = Position.load(harness.cursors["application"])
    assert position is not None and position.entity_id == str(last)
