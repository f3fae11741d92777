"""Benchmark: how many Dagster runs push N pending applications, and what Dagster costs per entity.

    .venv/bin/python -m benchmarks.dagster_runs [--applications 1000] [--per-partition 40]
                                                [--database postgres|sqlite] [--sensor-interval 5] [--keep]

The real stack, as in production (dmrv_sync_tests/fixtures/dagster.py): a Dagster instance (PostgreSQL
storage, or SQLite files under DAGSTER_HOME), `dagster-daemon run` ticking the sensors and launching
each run as a subprocess, `dagster-webserver` (its GraphQL API launches the floor run), the Certify
emulator process without a rate limit, and the request budget at 1,000/s.

1. Seeds `--applications` applications and what they stand on (`demo seed` without the invalid
   records; every production run complete and every application applied, so all of them are pending),
   links the facilities and feedstock types (`demo link`), and lets the sensors do everything else,
   parents first. Waits until the sensors have nothing left to request.
2. Counts the runs per entity type from the instance (run tag `dmrv/entity_type`).
3. Times the applications: from the application sensor's first tick that requested a run to the end of
   the last application run (the wall time W). Inside each application run, the sync core's time is
   the span between the asset's "syncing N ... entities" log line (written right before the sync core
   is entered) and the first event the asset yields after it (the first materialization, check result
   or failure: the asset computes every result before it yields anything). The union of those spans
   over all runs is C. Orchestration cost per entity = (W − C) / N: sensor ticks and their partition
   writes, the run queue, process starts, Dagster's per-partition materialization events, run teardown.
   Also shown: the same cost counted inside the runs only (Σ run start→end − Σ core) / N.
4. Measures Dagster's floor on the same instance: a trivial ranged multi_asset (`floor_defs` below,
   loaded by the daemon and webserver as a second code location) over N new dynamic partitions, that
   logs one materialization per partition like the entity assets do, (a) launched through the webserver
   as one ranged run, like a sensor's run (run start→end), and (b) with `materialize()` in this process.

5. One run per partition, for comparison: `--per-partition` more applications (40) were seeded but
   left planned, so the sensors passed them by; with the application sensor stopped they are made
   ready and one run per application is launched through the webserver (as a sensor yielding a
   RunRequest per record would), queued under the same max_concurrent_runs. Wall time from the first
   run's creation to the last run's end, and the same orchestration cost as in 3 (sync core taken out).

Prints one table; exit status 0 when the application runs are at most 10, the orchestration cost per
application is at most 2× the floor's cost per partition (the launched ranged run from its creation to
its end, as W holds the application runs' queueing and process starts), and
at least 50× below the orchestration cost per application with one run per partition.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext  # not a string annotation: Dagster inspects it

FLOOR_PARTITIONS = dg.DynamicPartitionsDefinition(name="dagster_floor")
FLOOR_ASSET = dg.AssetKey(["benchmark", "dagster_floor"])
FLOOR_LOCATION = "dagster_floor"
DESIGN_FLOOR_MS = 27.0  # design.md: one run over 1,000 partitions, trivial body, SQLite, 2 cores
MAX_APPLICATION_RUNS = 10
PARTITION = "dagster/partition"
CODE_LOCATION_NAME = "dmrv_sync"
APPLICATION_ASSET = dg.AssetKey(["isometric", "biochar_application"])
MIN_PER_PARTITION_SPEEDUP = 50.0
MAX_FLOOR_RATIO = 2.0
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dg.multi_asset(
    name="dagster_floor",
    specs=[dg.AssetSpec(FLOOR_ASSET, partitions_def=FLOOR_PARTITIONS, skippable=True)],
    partitions_def=FLOOR_PARTITIONS,
)
def dagster_floor(context: AssetExecutionContext) -> Iterator[Any]:
    """Nothing but what the entity assets do around the sync core: one materialization per partition."""
    for key in context.partition_keys:
        yield dg.AssetMaterialization(asset_key=FLOOR_ASSET, partition=key, metadata={"entity_id": key})


floor_defs = dg.Definitions(assets=[dagster_floor])


def seed_pending_applications(db_url: str, applications: int) -> dict[str, int]:
    from sqlalchemy import update

    from dmrv_sync.db.models import Application, ApplicationStatus, ProductionRun, ProductionRunStatus
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.demo.seed import seed_demo_data

    sessions = get_session_factory(db_url)
    report = seed_demo_data(sessions, scale=applications, with_invalid=False)
    with sessions.begin() as session:
        session.execute(update(ProductionRun).values(status=ProductionRunStatus.COMPLETE))
        session.execute(update(Application).values(status=ApplicationStatus.APPLIED))
    return report.counts


def sync_core_span(stack: Any, run_id: str) -> tuple[float, float] | None:
    """(entered, left) the sync core in one entity run, from its event log (see the module docstring)."""
    entered = None
    for entry in stack.instance.all_logs(run_id):
        if entered is None:
            if entry.dagster_event is None and (entry.user_message or "").startswith("syncing "):
                entered = entry.timestamp
            continue
        event = entry.dagster_event
        if event is not None and event.event_type_value in (
            "ASSET_MATERIALIZATION",
            "ASSET_CHECK_EVALUATION",
            "ASSET_OBSERVATION",
            "STEP_FAILURE",
        ):
            return entered, entry.timestamp
    return None


def union_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def launch_floor_run(stack: Any, keys: list[str]) -> str:
    return launch_run(stack, FLOOR_LOCATION, FLOOR_ASSET, {RANGE_START: keys[0], RANGE_END: keys[-1]})


def launch_run(stack: Any, location: str, asset: dg.AssetKey, tags: dict[str, str]) -> str:
    """Launch one run of `asset` through the webserver's GraphQL API, as the UI's Materialize does."""
    data = stack.graphql(
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
             ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }""",
        {
            "p": {
                "selector": {
                    "repositoryLocationName": location,
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": asset.path}],
                },
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            }
        },
    )["launchRun"]
    if data["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"could not launch a run of {asset.to_user_string()}: {data}")
    return str(data["run"]["runId"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applications", type=int, default=1000)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--sensor-interval", type=int, default=5, help="DMRV_SENSOR_INTERVAL_SECONDS")
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds to wait for the sensors.")
    parser.add_argument(
        "--per-partition", type=int, default=40, help="Applications synced with one run each (0: skip)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (logs).")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="dmrv-dagster-runs-"))
    try:
        figures = run_benchmark(root, args)
    except Exception:
        print(f"benchmark failed; logs under {root}", file=sys.stderr)
        raise
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print_table(figures)
    # Like for like: W runs from the first tick's request, so it holds the runs' queueing and process
    # starts; the floor run's cost is counted the same way, from its creation to its end.
    ratio = figures["orchestration ms/entity"] / figures["floor ms/partition (created → end)"]
    verdicts = [
        (
            figures["application runs"] <= MAX_APPLICATION_RUNS,
            f"{figures['application runs']} application runs (target: at most {MAX_APPLICATION_RUNS})",
        ),
        (
            ratio <= MAX_FLOOR_RATIO,
            f"orchestration {ratio:.2f}× Dagster's floor (target ≤ {MAX_FLOOR_RATIO:g}×)",
        ),
    ]
    if "per-partition runs" in figures:
        # Like for like with the floor: orchestration per entity, the sync core's own time taken out.
        speedup = figures["per-partition orchestration ms/entity"] / figures["orchestration ms/entity"]
        verdicts.append(
            (
                speedup >= MIN_PER_PARTITION_SPEEDUP,
                f"orchestration {speedup:.0f}× cheaper than with one run per partition "
                f"(target ≥ {MIN_PER_PARTITION_SPEEDUP:g}×)",
            )
        )
    for ok_, text in verdicts:
        print(f"{'OK' if ok_ else 'FAIL'}: {text}")
    return 0 if all(ok_ for ok_, _ in verdicts) else 1


def run_benchmark(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from dmrv_sync.demo.link import link_demo
    from dmrv_sync.settings import Settings
    from dmrv_sync_tests.fixtures.dagster import start_dagster_stack, wait_until_settled

    floor_location = {
        "python_file": {
            "relative_path": str(Path(__file__).resolve()),
            "attribute": "floor_defs",
            "working_directory": str(Path(__file__).resolve().parents[1]),
            "location_name": FLOOR_LOCATION,
        }
    }
    with start_dagster_stack(
        root,
        database=args.database,
        extra_env={"DMRV_SENSOR_INTERVAL_SECONDS": str(args.sensor_interval)},
        extra_locations=[floor_location],
    ) as stack:
        figures: dict[str, Any] = {"database": args.database, "applications": args.applications}
        figures["seeded"] = seed_pending_applications(
            stack.dmrv_db_url, args.applications + args.per_partition
        )
        held = hold_back(stack.dmrv_db_url, args.per_partition)
        link_demo(Settings(dmrv_database_url=stack.dmrv_db_url, isometric_base_url=stack.emulator.base_url))
        seeded_at = time.time()
        print(f"seeded {figures['seeded']}; waiting for the sensors ...", file=sys.stderr, flush=True)
        wait_until_settled(stack, since=seeded_at, timeout=args.timeout)
        figures["settled after s"] = time.time() - seeded_at
        figures.update(application_figures(stack, args.applications))
        stats = stack.emulator.admin.stats()
        figures["duplicates"] = stats["duplicate_supplier_reference_ids"]["total"]
        figures["biochar_applications in the registry"] = stats["objects"].get("biochar_applications", 0)
        figures.update(floor_figures(stack, args.applications))
        figures.update(per_partition_figures(stack, held))
        return figures


def hold_back(db_url: str, count: int) -> list[str]:
    """Leave `count` applications planned (not ready) so the sensors pass them by; returns their IDs."""
    from sqlalchemy import select, update

    from dmrv_sync.db.models import Application, ApplicationStatus
    from dmrv_sync.db.session import get_session_factory

    with get_session_factory(db_url).begin() as session:
        ids = list(session.scalars(select(Application.id).order_by(Application.id).limit(count)))
        session.execute(
            update(Application).where(Application.id.in_(ids)).values(status=ApplicationStatus.PLANNED)
        )
    return [str(i) for i in ids]


def per_partition_figures(stack: Any, held: list[str]) -> dict[str, Any]:
    """The held-back applications made ready with the sensor stopped, then one run per partition launched
    through the webserver (as a sensor yielding a RunRequest per record would): created → end of all."""
    from sqlalchemy import update

    from dmrv_sync.db.models import Application, ApplicationStatus
    from dmrv_sync.db.session import get_session_factory

    if not held:
        return {}
    stack.set_sensor("application_sensor", running=False)
    with get_session_factory(stack.dmrv_db_url).begin() as session:
        session.execute(
            update(Application).where(Application.id.in_(held)).values(status=ApplicationStatus.APPLIED)
        )
    stack.instance.add_dynamic_partitions("application", held)
    run_ids = [launch_run(stack, CODE_LOCATION_NAME, APPLICATION_ASSET, {PARTITION: key}) for key in held]

    def finished() -> Any:
        records = [stack.instance.get_run_record_by_id(run_id) for run_id in run_ids]
        return records if all(r and r.dagster_run.is_finished for r in records) else None

    records = stack.wait_for("the per-partition runs", finished, timeout=1800)
    failed = [r.dagster_run.run_id for r in records if not r.dagster_run.is_success]
    if failed:
        raise RuntimeError(f"per-partition runs failed: {failed}\n{stack.diagnostics()}")
    wall = max(r.end_time for r in records) - min(r.create_timestamp.timestamp() for r in records)
    spans = [s for s in (sync_core_span(stack, run_id) for run_id in run_ids) if s]
    return {
        "per-partition orchestration ms/entity": 1000 * (wall - union_seconds(spans)) / len(records),
        "per-partition runs": len(records),
        "per-partition wall s": wall,
        "per-partition ms/entity": 1000 * wall / len(records),
    }


def application_figures(stack: Any, entities: int) -> dict[str, Any]:
    records = [r for r in stack.runs() if "dmrv/entity_type" in r.dagster_run.tags]
    per_type: dict[str, int] = {}
    for record in records:
        entity_type = record.dagster_run.tags["dmrv/entity_type"]
        per_type[entity_type] = per_type.get(entity_type, 0) + 1
    app_runs = [r for r in records if r.dagster_run.tags["dmrv/entity_type"] == "application"]
    ticks = stack.sensor_ticks(limit=1000).get("application_sensor", [])
    requested = min(t.timestamp for t in ticks if t.run_ids)
    finished = max(r.end_time for r in app_runs)
    spans = [s for s in (sync_core_span(stack, r.dagster_run.run_id) for r in app_runs) if s]
    wall = finished - requested
    core = union_seconds(spans)
    in_runs = sum(r.end_time - r.start_time for r in app_runs)
    core_sum = sum(b - a for a, b in spans)
    breakdown = []
    for record, span in zip(
        app_runs, (sync_core_span(stack, r.dagster_run.run_id) for r in app_runs), strict=True
    ):
        created = record.create_timestamp.timestamp()
        entered, left = span or (record.start_time, record.start_time)
        breakdown.append(
            (
                int(record.dagster_run.tags.get("dmrv/entities", 0)),
                record.start_time - created,  # queue + process start, until RUN_START
                entered - record.start_time,  # step start, resources, engine set-up
                left - entered,  # the sync core
                record.end_time - left,  # per-entity events, checks, step and run end
            )
        )
    return {
        "per run": sorted(breakdown, key=lambda row: -row[0]),
        "runs per entity type": per_type,
        "runs in all": sum(per_type.values()),
        "application runs": len(app_runs),
        "partitions per application run": [int(r.dagster_run.tags.get("dmrv/entities", 0)) for r in app_runs],
        "application wall s": wall,
        "sync core s": core,
        "orchestration ms/entity": 1000 * (wall - core) / entities,
        "wall ms/entity": 1000 * wall / entities,
        "in-run orchestration ms/entity": 1000 * (in_runs - core_sum) / entities,
        "run process start→end s (sum)": in_runs,
    }


def floor_figures(stack: Any, entities: int) -> dict[str, Any]:
    keys = [f"floor-{time.time_ns()}-{i:06d}" for i in range(entities)]
    stack.instance.add_dynamic_partitions(FLOOR_PARTITIONS.name, keys)
    run_id = launch_floor_run(stack, keys)

    def finished() -> Any:
        record = stack.instance.get_run_record_by_id(run_id)
        return record if record and record.dagster_run.is_finished else None

    record = stack.wait_for("the floor run", finished, timeout=600)
    if not record.dagster_run.is_success:
        raise RuntimeError(f"the floor run {run_id} did not succeed\n{stack.diagnostics()}")
    launched = record.end_time - record.start_time
    queued_to_end = record.end_time - record.create_timestamp.timestamp()

    in_process_keys = [f"{k}-inproc" for k in keys]
    stack.instance.add_dynamic_partitions(FLOOR_PARTITIONS.name, in_process_keys)
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # its console log, not the cost
        result = dg.materialize(
            [dagster_floor],
            instance=stack.instance,
            tags={RANGE_START: in_process_keys[0], RANGE_END: in_process_keys[-1]},
        )
    in_process = time.perf_counter() - started
    assert result.success
    return {
        "floor run (launched) s": launched,
        "floor run created→end s": queued_to_end,
        "floor ms/partition (launched run)": 1000 * launched / entities,
        "floor ms/partition (created → end)": 1000 * queued_to_end / entities,
        "floor ms/partition (in process)": 1000 * in_process / entities,
    }


def print_table(f: dict[str, Any]) -> None:
    floor = f["floor ms/partition (launched run)"]
    rows = [
        ("instance / DMRV database", f["database"]),
        ("seeded", ", ".join(f"{n} {k}" for k, n in f["seeded"].items())),
        ("runs per entity type", ", ".join(f"{k} {n}" for k, n in f["runs per entity type"].items())),
        ("runs in all", f["runs in all"]),
        (
            "application runs",
            f"{f['application runs']} (partitions each: {f['partitions per application run']})",
        ),
        (
            "applications in the registry / duplicates",
            f"{f['biochar_applications in the registry']} / {f['duplicates']}",
        ),
        ("sensors settled after", f"{f['settled after s']:.1f} s"),
        ("applications: first request → last run end (W)", f"{f['application wall s']:.1f} s"),
        ("applications: time in the sync core (C)", f"{f['sync core s']:.1f} s"),
        ("orchestration per application (W − C) / N", f"{f['orchestration ms/entity']:.1f} ms"),
        ("  of which inside runs (start→end − core) / N", f"{f['in-run orchestration ms/entity']:.1f} ms"),
        (
            "floor: trivial ranged run, launched (start→end)",
            f"{f['floor run (launched) s']:.1f} s = {floor:.1f} ms/partition",
        ),
        (
            "floor: same, created → end (queue + launch)",
            f"{f['floor run created→end s']:.1f} s = {f['floor ms/partition (created → end)']:.1f} ms/partition",
        ),
        ("floor: trivial ranged run, in process", f"{f['floor ms/partition (in process)']:.1f} ms/partition"),
        ("design.md floor (SQLite, 1.13.28)", f"{DESIGN_FLOOR_MS:.0f} ms/partition"),
        (
            "ratio to the floor (created → end / start → end / design.md)",
            f"{f['orchestration ms/entity'] / f['floor ms/partition (created → end)']:.2f}× / "
            f"{f['orchestration ms/entity'] / floor:.2f}× / {f['orchestration ms/entity'] / DESIGN_FLOOR_MS:.2f}×",
        ),
    ]
    if "per-partition runs" in f:
        speedup = f["per-partition ms/entity"] / f["wall ms/entity"]
        rows += [
            (
                f"one run per partition ({f['per-partition runs']} applications)",
                f"{f['per-partition wall s']:.1f} s = {f['per-partition ms/entity']:.0f} ms/application",
            ),
            ("ranged runs: W / N", f"{f['wall ms/entity']:.1f} ms/application"),
            (
                "ranged runs are faster than one run per partition by",
                f"{speedup:.0f}× (wall, sync core included)",
            ),
            (
                "one run per partition: orchestration (W − C) / N",
                f"{f['per-partition orchestration ms/entity']:.0f} ms/application = "
                f"{f['per-partition orchestration ms/entity'] / f['orchestration ms/entity']:.0f}× the ranged runs'",
            ),
        ]
    for entities, queued, setup, core, events in f["per run"]:
        rows.append(
            (
                f"  application run of {entities}",
                f"queue+start {queued:.1f} s, set-up {setup:.1f} s, sync core {core:.1f} s, "
                f"events+end {events:.1f} s ({1000 * events / max(entities, 1):.0f} ms/entity)",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"\nDagster runs for {f['applications']} pending applications")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
