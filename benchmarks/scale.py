"""Benchmark P6: 100,000 partitions on one asset (Dagster's documented ceiling): the sensor's add, a run
and the status report still work, and how long each takes.

    .venv/bin/python -m benchmarks.scale [--partitions 100000] [--database postgres]
                                         [--records-per-tick N] [--run-partitions 500]

On a fresh migrated PostgreSQL DMRV database, a Dagster instance with PostgreSQL storage (its own fresh
database, in a temporary DAGSTER_HOME, used in this process) and the Certify emulator as a separate
process without a rate limit:

1. Seed: `--partitions` pending applications (status applied) and what they stand on — 5 facilities,
   4 feedstock types, one complete production run per 4 applications — by bulk insert (INSERT ... SELECT
   generate_series; `demo seed` is too slow at this size). IDs are md5-derived UUIDs, so they are known
   without reading them back. The applications' updated_at lie in the ~N ms before the seed, so they are
   younger than MAX_PARENT_WAIT: an application whose parent is not synced would make the sensor wait.
   Their parents are therefore synced first: `demo link` (facilities, feedstock types in the emulator),
   the feedstock types and the production runs of the applications the runs below sync are synced for
   real through the sync core; every other production run is marked synced in `registry_identities`
   (bulk insert; a placeholder external ID, never sent anywhere) — the state the application sensor
   meets in production once the production-run sensor has done its work. The ParentGate still runs its
   query per parent, and finds them settled.
2. Sensor add: the real `application_sensor` (dmrv_sync.definitions) evaluated tick after tick through
   `dg.build_sensor_context` with the instance and the DMRV database resource (the sensor adds its new
   partitions itself, one `instance.add_dynamic_partitions` per tick), the cursor carried, until every
   application has its partition. Records per tick: the sensor's DMRV_SENSOR_RECORDS_PER_TICK (default
   1,000), or `--records-per-tick`. A tick = the sensor's evaluation, its partition add included (the
   daemon would also create the requested runs: counted, not launched).
3. A run: with all N partitions on the asset, one ranged run of `--run-partitions` (500) partitions of
   `isometric/biochar_application` — the last ones added — with the range tags a sensor's RunRequest
   carries (`range_run_request`), through `dg.materialize` in this process against the emulator. The
   same run (another 500 fresh applications, parents synced alike) on a second instance whose asset has
   only 1,000 partitions gives the ratio. A 10-partition warm-up run on the small instance goes first,
   so neither timed run pays the first-run imports. Each run must succeed and materialize every
   partition; the time inside the sync core (from the asset's "syncing N" log line to its first event)
   is split out, as in benchmarks/dagster_runs.py.
4. The status report: `dmrv-sync status` and `dmrv-sync status --json` as subprocesses (median of 3,
   Python start included; `dmrv-sync --help` shown as the start-up floor), and Dagster's own view at N:
   `instance.get_dynamic_partitions("application")`, `instance.get_materialized_partitions`, and the
   asset's partition status as the UI computes it (`get_and_update_asset_status_cache_value`, first call
   and cached).

Prints one table; exit status 0 when every step worked at N: all N partitions added, both runs
succeeded with every partition materialized, both status commands exited 0.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FACILITIES = 5
FEEDSTOCK_TYPES = 4
APPLICATIONS_PER_RUN = 4
SMALL = 1_000  # partitions on the asset for the comparison run
WARM_UP = 10
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def md5_uuid(prefix: str, n: int) -> str:
    """The UUID PostgreSQL makes of md5(prefix || n)::uuid."""
    return str(uuid.UUID(hashlib.md5(f"{prefix}{n}".encode()).hexdigest()))


def application_id(g: int) -> str:
    return md5_uuid("application-", g)


def run_index(g: int) -> int:
    return (g - 1) // APPLICATIONS_PER_RUN + 1


# -- 1. seed ---------------------------------------------------------------------------------------


def seed(url: str, n: int) -> dict[str, int]:
    from sqlalchemy import text

    from dmrv_sync.db.session import get_engine

    now = datetime.now(UTC)
    runs = -(-n // APPLICATIONS_PER_RUN)
    old = now - timedelta(days=90)
    started = now - timedelta(days=60)
    params = {
        "old": old,
        "started": started,
        "ended": started + timedelta(hours=30),
        "applied_on": (now - timedelta(days=30)).date(),
        "first": now - timedelta(milliseconds=n),  # applications: one per ms up to now (recent)
        "runs": runs,
        "n": n,
    }
    statements = [
        f"""INSERT INTO facilities (id, name, country, latitude, longitude, created_at, updated_at)
            SELECT md5('facility-' || g)::uuid, 'Scale facility ' || g, 'CZE', 49.8 + g * 0.01, 18.2,
                   :old, :old FROM generate_series(1, {FACILITIES}) AS g""",
        f"""INSERT INTO feedstock_types (id, name, category, created_at, updated_at)
            SELECT md5('feedstock-' || g)::uuid, 'Scale feedstock ' || g, 'woody biomass', :old, :old
            FROM generate_series(1, {FEEDSTOCK_TYPES}) AS g""",
        f"""INSERT INTO production_runs (id, facility_id, started_at, ended_at, biochar_dry_mass_kg,
                moisture_percent, organic_carbon_fraction, h_corg_molar_ratio, o_corg_molar_ratio,
                pyrolysis_temperature_c, status, created_at, updated_at)
            SELECT md5('run-' || r)::uuid, md5('facility-' || (1 + r % {FACILITIES}))::uuid, :started, :ended,
                   20000, 12.5, 0.75, 0.3, 0.1, 620, 'complete',
                   :old + r * interval '1 millisecond', :old + r * interval '1 millisecond'
            FROM generate_series(1, :runs) AS r""",
        f"""INSERT INTO production_run_feedstock_types (production_run_id, feedstock_type_id)
            SELECT md5('run-' || r)::uuid, md5('feedstock-' || (1 + r % {FEEDSTOCK_TYPES}))::uuid
            FROM generate_series(1, :runs) AS r""",
        f"""INSERT INTO applications (id, production_run_id, site_name, latitude, longitude, storage_method,
                application_date, applied_mass_kg, area_ha, truck_mass_on_arrival_kg,
                truck_mass_on_departure_kg, status, created_at, updated_at)
            SELECT md5('application-' || g)::uuid, md5('run-' || ((g - 1) / {APPLICATIONS_PER_RUN} + 1))::uuid,
                   'Scale field ' || g, 49.8 + (g % 1000) * 0.0001, 18.2 + (g % 997) * 0.0001,
                   'biochar_field', :applied_on, 2000, 5, 22000, 20000, 'applied',
                   :first + g * interval '1 millisecond', :first + g * interval '1 millisecond'
            FROM generate_series(1, :n) AS g""",
    ]
    with get_engine(url).begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)
        conn.execute(text("ANALYZE"))
    return {
        "facility": FACILITIES,
        "feedstock_type": FEEDSTOCK_TYPES,
        "production_run": runs,
        "application": n,
    }


def sync_parents(url: str, emulator_url: str, run_numbers: set[int]) -> dict[str, Any]:
    """Link the facilities, sync the feedstock types and the given production runs for real, and mark
    every other production run synced in the sidecar (see the module docstring)."""
    from sqlalchemy import text

    from dmrv_sync.api import sync_engine
    from dmrv_sync.db.session import get_engine
    from dmrv_sync.demo.link import link_demo

    settings = scale_settings(url, emulator_url)
    link_demo(settings)
    real_runs = [md5_uuid("run-", r) for r in sorted(run_numbers)]
    with sync_engine(settings, run_id="scale-parents") as engine:
        feedstocks = engine.sync_entities("feedstock_type", [md5_uuid("feedstock-", g) for g in range(1, 5)])
        runs = engine.sync_entities("production_run", real_runs)
    bad = [r for r in [*feedstocks, *runs] if not r.ok]
    if bad:
        raise RuntimeError(f"parents did not sync: {[(r.entity_id, r.status, r.message) for r in bad[:5]]}")
    with get_engine(url).begin() as conn:
        marked = conn.execute(
            text(
                """INSERT INTO registry_identities (entity_type, entity_id, registry_name, external_entity_type,
                       external_id, sync_status, last_synced_at, metadata, attempt_count,
                       needs_reconciliation, created_at, updated_at)
                   SELECT 'production_run', id::text, 'isometric', 'production_batch',
                          'pbt_scale' || substr(md5(id::text), 1, 16), 'synced', now(), '{}', 1, false, now(), now()
                   FROM production_runs
                   ON CONFLICT DO NOTHING"""
            )
        ).rowcount
        conn.execute(text("ANALYZE registry_identities"))
    return {"real production runs": len(real_runs), "marked synced": marked}


def scale_settings(url: str, emulator_url: str) -> Any:
    from dmrv_sync.settings import DEMO_ACCESS_TOKEN, DEMO_CLIENT_SECRET, Settings

    return Settings(
        dmrv_database_url=url,
        isometric_base_url=emulator_url,
        isometric_requests_per_second=1000,
        isometric_client_secret=DEMO_CLIENT_SECRET,
        isometric_access_token=DEMO_ACCESS_TOKEN,
    )


# -- the Dagster instance ----------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_instance(root: Path, name: str) -> Any:
    import dagster as dg
    import yaml

    from dmrv_sync_tests.fixtures.dagster import dagster_yaml, postgres_storage
    from dmrv_sync_tests.fixtures.db import create_postgres_database, drop_postgres_database

    url = create_postgres_database()
    home = root / name
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(dagster_yaml(postgres_storage(url), max_concurrent_runs=1), sort_keys=False)
    )
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()
        drop_postgres_database(url)


# -- 2. sensor add -----------------------------------------------------------------------------------


def sensor_add(instance: Any, url: str, n: int) -> dict[str, Any]:
    import dagster as dg

    from dmrv_sync.definitions import defs
    from dmrv_sync.orchestration.resources import DmrvDatabase
    from dmrv_sync.orchestration.sensors import DEFAULT_RECORDS_PER_TICK

    sensor = defs.resolve_sensor_def("application_sensor")
    resources = {"dmrv_database": DmrvDatabase(url=url)}
    cursor: str | None = None
    added = 0
    ticks: list[dict[str, Any]] = []
    max_ticks = -(-n // DEFAULT_RECORDS_PER_TICK) + 10
    started = time.perf_counter()
    while added < n and len(ticks) < max_ticks:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        t0 = time.perf_counter()
        result = sensor(context)
        t1 = time.perf_counter()
        if not isinstance(result, dg.SensorResult) or not result.run_requests:
            raise RuntimeError(f"tick {len(ticks) + 1} at {added:,} partitions: {result!r}")
        # The sensor added the keys its runs cover (all new here); the instance's count is checked at the end.
        keys = sum(int(r.tags["dmrv/entities"]) for r in result.run_requests or [])
        ticks.append(
            {
                "before": added,
                "after": added + keys,
                "eval": t1 - t0,
                "total": t1 - t0,
                "runs": [int(r.tags["dmrv/entities"]) for r in result.run_requests or []],
            }
        )
        added += keys
        cursor = result.cursor
    total = time.perf_counter() - started
    t0 = time.perf_counter()
    on_instance = len(instance.get_dynamic_partitions("application"))
    count_s = time.perf_counter() - t0
    return {
        "records per tick": DEFAULT_RECORDS_PER_TICK,
        "ticks": ticks,
        "total s": total,
        "partitions": on_instance,
        "count s": count_s,
        "ok": on_instance == n,
    }


# -- 3. a run ----------------------------------------------------------------------------------------


def ranged_run(instance: Any, url: str, emulator_url: str, keys: list[str]) -> dict[str, Any]:
    import dagster as dg

    from benchmarks.dagster_runs import sync_core_span
    from dmrv_sync.orchestration.assets import build_registry_assets
    from dmrv_sync.orchestration.resources import DmrvDatabase, IsometricRegistry
    from dmrv_sync.orchestration.sensors import range_run_request
    from dmrv_sync.settings import DEMO_ACCESS_TOKEN, DEMO_CLIENT_SECRET

    key = dg.AssetKey(["isometric", "biochar_application"])
    asset = next(a for a in build_registry_assets() if key in a.keys)
    request = range_run_request("application", keys, "scale")
    resources = {
        "dmrv_database": DmrvDatabase(url=url),
        "isometric_registry": IsometricRegistry(
            client_secret=DEMO_CLIENT_SECRET,
            access_token=DEMO_ACCESS_TOKEN,
            base_url=emulator_url,
            requests_per_second=1000.0,
        ),
    }
    called_at = time.time()
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # its console log, not the cost
        result = dg.materialize(
            [asset], instance=instance, tags=dict(request.tags), resources=resources, raise_on_error=False
        )
    wall = time.perf_counter() - started
    returned_at = time.time()
    run_id = result.run_id
    record = instance.get_run_record_by_id(run_id)
    materialized = len(
        instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=len(keys) + 10
        ).records
    )
    span = sync_core_span(SimpleNamespace(instance=instance), run_id)
    failures = []
    if not result.success:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            data = entry.dagster_event.step_failure_data
            failures.append(
                (data.user_failure_data.description if data.user_failure_data else None) or data.error.message
            )
    return {
        "partitions": len(keys),
        "success": result.success,
        "materialized": materialized,
        "wall s": wall,
        "start→end s": record.end_time - record.start_time if record and record.end_time else float("nan"),
        "core s": (span[1] - span[0]) if span else float("nan"),
        "call→created s": record.create_timestamp.timestamp() - called_at,
        "created→start s": record.start_time - record.create_timestamp.timestamp(),
        "end→return s": returned_at - record.end_time,
        "failures": failures,
        "ok": result.success and materialized == len(keys),
    }


# -- 4. the status report ----------------------------------------------------------------------------


def cli_seconds(url: str, *args: str, repeat: int = 3) -> tuple[float, bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMRV_", "ISOMETRIC_", "DAGSTER_"))}
    env["DMRV_DATABASE_URL"] = url
    times = []
    ok = True
    out = ""
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(repeat):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "dmrv_sync.cli", *args],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=600,
            )
            times.append(time.perf_counter() - t0)
            ok &= done.returncode == 0
            out = done.stdout if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-2000:]}"
    return statistics.median(times), ok, out


def dagster_view(instance: Any) -> dict[str, Any]:
    import dagster as dg
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from dmrv_sync.orchestration.partitions import ENTITY_PARTITIONS

    key = dg.AssetKey(["isometric", "biochar_application"])
    partitions_def = ENTITY_PARTITIONS["application"]
    figures: dict[str, Any] = {}

    def timed(label: str, fn: Any, repeat: int = 3) -> Any:
        times, value = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t0)
        figures[label] = statistics.median(times)
        return value

    figures["partitions"] = len(
        timed("get_dynamic_partitions", lambda: instance.get_dynamic_partitions("application"))
    )
    figures["materialized"] = len(
        timed("get_materialized_partitions", lambda: instance.get_materialized_partitions(key))
    )
    t0 = time.perf_counter()
    cached = get_and_update_asset_status_cache_value(instance, key, partitions_def)
    figures["status cache first"] = time.perf_counter() - t0
    timed(
        "status cache again", lambda: get_and_update_asset_status_cache_value(instance, key, partitions_def)
    )
    assert cached is not None
    subset = cached.deserialize_materialized_partition_subsets(partitions_def)
    figures["status materialized"] = len(subset.get_partition_keys())
    return figures


# -- the benchmark -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--database", choices=["postgres"], default="postgres")
    parser.add_argument(
        "--records-per-tick", type=int, help="DMRV_SENSOR_RECORDS_PER_TICK (default: the sensor's)"
    )
    parser.add_argument("--run-partitions", type=int, default=500)
    args = parser.parse_args()
    n, size = args.partitions, args.run_partitions
    if n < SMALL + size or size > SMALL - WARM_UP:
        parser.error(
            f"--partitions must be at least {SMALL + size:,} and --run-partitions at most {SMALL - WARM_UP}"
        )
    if args.records_per_tick:
        os.environ["DMRV_SENSOR_RECORDS_PER_TICK"] = str(args.records_per_tick)  # read at import

    from benchmarks.budget_shared import emulator_process
    from dmrv_sync.db.migrate import upgrade
    from dmrv_sync.db.session import get_engine
    from dmrv_sync_tests.fixtures.db import create_postgres_database, drop_postgres_database

    # Applications g = 1..n in sensor order; the small instance holds 1..SMALL, the warm-up syncs the first
    # WARM_UP, its timed run the last `size` of them; the big run syncs the last `size` of all n.
    small_run = list(range(SMALL - size + 1, SMALL + 1))
    big_run = list(range(n - size + 1, n + 1))
    warm_up = list(range(1, WARM_UP + 1))
    parent_runs = {run_index(g) for g in [*warm_up, *small_run, *big_run]}

    f: dict[str, Any] = {"n": n, "size": size}
    root = Path(tempfile.mkdtemp(prefix="dmrv-scale-"))
    with ExitStack() as cleanup:
        cleanup.callback(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        emulator_url = cleanup.enter_context(emulator_process(None, root / "emulator.log"))
        url = create_postgres_database()
        cleanup.callback(drop_postgres_database, url)
        upgrade(url)
        os.environ["DMRV_DATABASE_URL"] = url  # nothing here should fall back to the default SQLite file
        os.environ["ISOMETRIC_BASE_URL"] = emulator_url
        os.environ["ISOMETRIC_REQUESTS_PER_SECOND"] = "1000"

        t0 = time.perf_counter()
        f["seeded"] = seed(url, n)
        f["seed s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        f["parents"] = sync_parents(url, emulator_url, parent_runs)
        f["parents s"] = time.perf_counter() - t0
        progress(
            f"seeded {f['seeded']} in {f['seed s']:.1f} s; parents {f['parents']} in {f['parents s']:.1f} s"
        )

        big = cleanup.enter_context(postgres_instance(root, "dagster_big"))
        f["sensor"] = sensor_add(big, url, n)
        s = f["sensor"]
        progress(f"sensor: {len(s['ticks'])} ticks, {s['partitions']:,} partitions in {s['total s']:.1f} s")

        keys = big.get_dynamic_partitions("application")
        expected = [application_id(g) for g in range(1, n + 1)]
        f["order ok"] = keys == expected  # partitions in sensor order: the ranges below are as intended

        with postgres_instance(root, "dagster_small") as small:
            small.add_dynamic_partitions("application", keys[:SMALL])
            f["warm-up"] = ranged_run(small, url, emulator_url, [keys[g - 1] for g in warm_up])
            f["run small"] = ranged_run(small, url, emulator_url, [keys[g - 1] for g in small_run])
            progress(f"run at {SMALL:,}: {f['run small']['wall s']:.1f} s, ok {f['run small']['ok']}")
        f["run big"] = ranged_run(big, url, emulator_url, [keys[g - 1] for g in big_run])
        progress(f"run at {n:,}: {f['run big']['wall s']:.1f} s, ok {f['run big']['ok']}")

        f["cli help"] = cli_seconds(url, "--help")
        f["cli status"] = cli_seconds(url, "status")
        f["cli status json"] = cli_seconds(url, "status", "--json")
        f["dagster view"] = dagster_view(big)
        get_engine(url).dispose()
        get_engine.cache_clear()

    print_table(f)
    ok = (
        f["sensor"]["ok"]
        and f["order ok"]
        and f["warm-up"]["ok"]
        and f["run small"]["ok"]
        and f["run big"]["ok"]
        and f["cli status"][1]
        and f["cli status json"][1]
        and f["dagster view"]["partitions"] == n
    )
    for label in ("warm-up", "run small", "run big"):
        for failure in f[label]["failures"][:3]:
            print(f"{label} failure: {failure[:2000]}")
    for label in ("cli status", "cli status json"):
        if not f[label][1]:
            print(f"{label}: {f[label][2]}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_table(f: dict[str, Any]) -> None:
    n, size = f["n"], f["size"]
    s = f["sensor"]
    ticks = s["ticks"]
    totals = [t["total"] for t in ticks]
    last = ticks[-1]
    tail = [t for t in ticks if t["after"] > n - 1_000]  # the ticks that added the last 1,000
    requests = [keys for t in ticks for keys in t["runs"]]
    small, big = f["run small"], f["run big"]
    view = f["dagster view"]
    rows: list[tuple[str, str]] = [
        (
            "seed (bulk insert)",
            f"{f['seed s']:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in f["seeded"].items()),
        ),
        (
            "parents synced first (untimed step)",
            f"{f['parents']['real production runs']} production runs for real, "
            f"{f['parents']['marked synced']:,} marked synced ({f['parents s']:.1f} s)",
        ),
        ("sensor: records per tick", f"{s['records per tick']:,}"),
        ("sensor: ticks to add all", f"{len(ticks):,} → {s['partitions']:,} partitions on the instance"),
        ("sensor: total time to add all", f"{s['total s']:.1f} s"),
        (
            "sensor: tick s (its partition add included) first / last / mean",
            f"{totals[0]:.3f} / {totals[-1]:.3f} / {statistics.mean(totals):.3f}",
        ),
        ("sensor: slowest tick", f"{max(totals):.3f} s"),
        (
            f"sensor: last tick ({last['before']:,} → {last['after']:,})",
            f"{last['total']:.3f} s",
        ),
        (
            f"sensor: ticks {tail[0]['before']:,} → {tail[-1]['after']:,} ({len(tail)} ticks)",
            f"{sum(t['total'] for t in tail):.3f} s",
        ),
        (
            "sensor: run requests produced",
            f"{len(requests):,} (partitions each: min {min(requests)}, max {max(requests)}, sum {sum(requests):,})",
        ),
        ("partition order = sensor order", str(f["order ok"])),
    ]
    for label, run in (
        (f"run of {size} at {SMALL:,} partitions", small),
        (f"run of {size} at {n:,} partitions", big),
    ):
        rows.append(
            (
                label,
                f"{run['wall s']:.1f} s materialize(), {run['start→end s']:.1f} s run start→end, "
                f"{run['core s']:.1f} s sync core; success {run['success']}, {run['materialized']} materialized",
            )
        )
        rows.append(
            (
                "  outside the run record",
                f"call→created {run['call→created s']:.1f} s, created→start {run['created→start s']:.1f} s, "
                f"end→return {run['end→return s']:.1f} s",
            )
        )
    rows.append(
        (
            f"ratio run at {n:,} / at {SMALL:,}",
            f"{big['wall s'] / small['wall s']:.2f} (wall); outside the sync core "
            f"{big['wall s'] - big['core s']:.1f} s / {small['wall s'] - small['core s']:.1f} s = "
            f"{(big['wall s'] - big['core s']) / (small['wall s'] - small['core s']):.2f}",
        )
    )
    rows += [
        ("dmrv-sync --help (Python start-up floor)", f"{f['cli help'][0]:.2f} s"),
        ("dmrv-sync status", f"{f['cli status'][0]:.2f} s (exit ok: {f['cli status'][1]})"),
        ("dmrv-sync status --json", f"{f['cli status json'][0]:.2f} s (exit ok: {f['cli status json'][1]})"),
        (
            'instance.get_dynamic_partitions("application")',
            f"{view['get_dynamic_partitions']:.3f} s ({view['partitions']:,} keys)",
        ),
        (
            "instance.get_materialized_partitions",
            f"{view['get_materialized_partitions']:.3f} s ({view['materialized']:,} keys)",
        ),
        (
            "partition status (UI cache), first call",
            f"{view['status cache first']:.3f} s ({view['status materialized']:,} materialized)",
        ),
        ("partition status (UI cache), cached", f"{view['status cache again']:.3f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\nP6 scale: {n:,} partitions on isometric/biochar_application (PostgreSQL DMRV database and Dagster storage)"
    )
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
