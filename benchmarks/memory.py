"""Benchmark P5: peak memory of a run stays under 300 MB and flat however large the backlog is.

    .venv/bin/python -m benchmarks.memory [--sizes 10000 100000] [--database postgres]

For each backlog size N: a fresh migrated PostgreSQL database holding N pending applications and what
they stand on, bulk-inserted with INSERT ... SELECT generate_series (5 facilities, 4 feedstock types,
N/4 complete production runs with one feedstock type each, N applied applications that pass
validation; `updated_at` a millisecond apart, in 2024, so no sensor waits for a parent). Then each of
these runs in a FRESH SUBPROCESS, so its peak RSS (getrusage(RUSAGE_SELF).ru_maxrss) is that one
thing's. (Linux carries ru_maxrss over from the process that forked: the subprocesses are started by a
small launcher process started first, not by this process, which grows with N; each also reports its
VmHWM from /proc/self/status, and the table's last line says how far the two differ.)

  baseline  a process that only imports dmrv_sync.definitions (what any run process costs before work);
  (a)       the selection `dmrv-sync sync pending` makes: SyncEngine.select("application", "pending")
            (it must return all N IDs);
  (c)       one tick of the real application_sensor with the whole backlog new, evaluated through
            dg.build_sensor_context on a fresh temporary Dagster instance (records per tick as deployed:
            DMRV_SENSOR_RECORDS_PER_TICK, default 1,000);
  (b)       one Dagster run as the sensor launches it: the application asset over a range of the first
            DMRV_PARTITIONS_PER_RUN (default 500) of the N partitions, with `dg.materialize` in process,
            on a temporary Dagster instance that holds all N partitions of the dynamic partitions
            definition `application`, against the Certify emulator running as a separate process with
            no rate limit (request budget 1,000/s). Before it (not measured) the facilities are linked
            and the feedstock types created in the emulator (`demo link`), and the feedstock types and
            the production runs of those applications are synced, so the run does real work: it must
            put every one of its applications in the registry.

Prints one table: per size the peak RSS in MB (ru_maxrss / 1024) of each process, the IDs (a) chose,
the applications (b) synced and the partitions (c) added, then the ratio size(largest) / size(smallest)
for (a), (b) and (c). "Flat" means that ratio is at most 1.25. Exit status 0 when every measured
process stays under 300 MB at every size, each ratio is flat, (a) returns all N IDs and (b) syncs all
of its applications.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAX_MB = 300.0
MAX_RATIO = 1.25
BASE = "2024-01-01T00:00:00+00:00"
FACILITIES = 5
FEEDSTOCK_TYPES = 4
APPLICATIONS_PER_RUN = 4
RESULT_PREFIX = "P5-RESULT "


# -- the measured processes (each runs as `python -m benchmarks.memory --child KIND ...`) -------------
# Nothing heavy is imported at module level: the baseline child must cost what importing
# dmrv_sync.definitions costs, and nothing else.


def child_baseline(args: argparse.Namespace) -> dict[str, Any]:
    import dmrv_sync.definitions  # noqa: F401

    return {}


def child_select(args: argparse.Namespace) -> dict[str, Any]:
    from dmrv_sync.api import sync_engine

    with sync_engine(_settings(args)) as engine:
        ids = engine.select("application", "pending")
    return {"ids": len(ids)}


def child_sensor(args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    from dmrv_sync.definitions import defs
    from dmrv_sync.orchestration.resources import DmrvDatabase

    sensor = defs.resolve_sensor_def("application_sensor")
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor=None, resources={"dmrv_database": DmrvDatabase(url=args.url)}
        )
        result = sensor(context)
        keys = len(instance.get_dynamic_partitions("application"))  # the sensor adds its new partitions
    if not isinstance(result, dg.SensorResult) or not result.run_requests:
        raise RuntimeError(f"the sensor skipped: {result}")
    return {"partitions": keys, "runs": len(result.run_requests or [])}


def child_run(args: argparse.Namespace) -> dict[str, Any]:
    import contextlib

    import dagster as dg

    from dmrv_sync.orchestration.assets import build_registry_assets
    from dmrv_sync.orchestration.resources import DmrvDatabase, IsometricRegistry
    from dmrv_sync.orchestration.sensors import range_run_request

    request = range_run_request("application", [args.first, args.last], "benchmark")
    tags = {**request.tags, "dmrv/entities": str(args.entities)}
    instance = dg.DagsterInstance.local_temp(args.dagster_home)
    with instance, open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        result = dg.materialize(
            build_registry_assets(),
            selection=request.asset_selection,
            instance=instance,
            resources={
                "dmrv_database": DmrvDatabase(url=args.url),
                "isometric_registry": IsometricRegistry(base_url=args.emulator, requests_per_second=1000),
            },
            tags=tags,
            raise_on_error=False,
        )
    synced = len(result.get_asset_materialization_events())
    return {"success": result.success, "synced": synced}


CHILDREN = {"baseline": child_baseline, "select": child_select, "sensor": child_sensor, "run": child_run}


def _settings(args: argparse.Namespace) -> Any:
    from dmrv_sync.settings import Settings

    return Settings(
        dmrv_database_url=args.url,
        isometric_base_url=args.emulator,
        isometric_requests_per_second=1000,
    )


def serve_launches() -> int:
    """Starts the measured processes, one at a time, as told on stdin (one JSON line each).

    On Linux a process's ru_maxrss starts at the peak of the process it was forked from (exec keeps it),
    so the measured processes are not started by the benchmark process, which grows with N: this
    launcher is started first, while it is small, and starts them."""
    for line in sys.stdin:
        job = json.loads(line)
        with open(job["log"], "a", encoding="utf-8") as stderr:
            done = subprocess.run(
                job["command"], stdout=subprocess.PIPE, stderr=stderr, text=True, check=False
            )
        print(json.dumps({"returncode": done.returncode, "stdout": done.stdout}), flush=True)
    return 0


class Launcher:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.memory", "--launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, kind: str, log: Path, **options: Any) -> dict[str, Any]:
        """One measured process; returns its figures and its peak RSS in MB."""
        assert self.process.stdin is not None and self.process.stdout is not None
        command = [sys.executable, "-m", "benchmarks.memory", "--child", kind]
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        with log.open("a", encoding="utf-8") as stderr:
            stderr.write(f"\n== {kind} {options} ==\n")
        self.process.stdin.write(json.dumps({"command": command, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        done = json.loads(self.process.stdout.readline())
        lines = [line for line in done["stdout"].splitlines() if line.startswith(RESULT_PREFIX)]
        if done["returncode"] != 0 or not lines:
            raise RuntimeError(f"the {kind} process failed (exit {done['returncode']}); its log: {log}")
        figures: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
        figures["mb"] = figures.pop("maxrss_kb") / 1024
        figures["hwm mb"] = figures.pop("vmhwm_kb") / 1024
        return figures

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# -- the backlog --------------------------------------------------------------------------------------


def fill(url: str, applications: int) -> None:
    """The backlog, bulk-inserted (see the module docstring)."""
    from sqlalchemy import text

    from dmrv_sync.db.session import get_engine

    runs = -(-applications // APPLICATIONS_PER_RUN)
    statements = [
        f"""INSERT INTO facilities (id, name, country, latitude, longitude, created_at, updated_at)
            SELECT gen_random_uuid(), 'facility ' || g, 'CZE', 49.82, 18.26,
                   CAST(:base AS timestamptz), CAST(:base AS timestamptz)
            FROM generate_series(1, {FACILITIES}) AS g""",
        f"""INSERT INTO feedstock_types (id, name, category, created_at, updated_at)
            SELECT gen_random_uuid(), 'feedstock ' || g, 'woody biomass',
                   CAST(:base AS timestamptz), CAST(:base AS timestamptz)
            FROM generate_series(1, {FEEDSTOCK_TYPES}) AS g""",
        f"""INSERT INTO production_runs (id, facility_id, started_at, ended_at, biochar_dry_mass_kg,
                moisture_percent, organic_carbon_fraction, h_corg_molar_ratio, o_corg_molar_ratio,
                pyrolysis_temperature_c, status, created_at, updated_at)
            SELECT gen_random_uuid(), f.id,
                   CAST(:base AS timestamptz) - interval '400 days' + g * interval '1 minute',
                   CAST(:base AS timestamptz) - interval '399 days' + g * interval '1 minute',
                   20000, 10, 0.8, 0.3, 0.1, 600, 'complete',
                   CAST(:base AS timestamptz) + g * interval '1 millisecond',
                   CAST(:base AS timestamptz) + g * interval '1 millisecond'
            FROM generate_series(1, :runs) AS g
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM facilities) AS f
              ON f.n = g % {FACILITIES}""",
        f"""INSERT INTO production_run_feedstock_types (production_run_id, feedstock_type_id)
            SELECT r.id, t.id
            FROM (SELECT id, row_number() OVER (ORDER BY updated_at, id) AS n FROM production_runs) AS r
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM feedstock_types) AS t
              ON t.n = r.n % {FEEDSTOCK_TYPES}""",
        f"""INSERT INTO applications (id, production_run_id, site_name, latitude, longitude, storage_method,
                application_date, applied_mass_kg, area_ha, truck_mass_on_arrival_kg,
                truck_mass_on_departure_kg, status, created_at, updated_at)
            SELECT gen_random_uuid(), r.id, 'field ' || g, 49.9, 18.3, 'biochar_field',
                   CAST(r.ended_at + interval '2 days' AS date), 2000, 5, 22000, 20000, 'applied',
                   CAST(:base AS timestamptz) + interval '1 day' + g * interval '1 millisecond',
                   CAST(:base AS timestamptz) + interval '1 day' + g * interval '1 millisecond'
            FROM generate_series(1, :applications) AS g
            JOIN (SELECT id, ended_at, row_number() OVER (ORDER BY updated_at, id) AS n
                  FROM production_runs) AS r
              ON r.n = (g - 1) / {APPLICATIONS_PER_RUN} + 1""",
    ]
    with get_engine(url).begin() as conn:
        for statement in statements:
            conn.execute(text(statement), {"base": BASE, "runs": runs, "applications": applications})
        conn.execute(text("ANALYZE"))


def application_keys(url: str) -> list[str]:
    """Every application ID in the order the sensor adds their partitions: (updated_at, id)."""
    from sqlalchemy import select

    from dmrv_sync.db.models import Application
    from dmrv_sync.db.session import get_session_factory

    with get_session_factory(url)() as session:
        rows = session.execute(select(Application.id).order_by(Application.updated_at, Application.id))
        return [str(key) for (key,) in rows]


def sync_parents(url: str, emulator: str, keys: list[str]) -> None:
    """Link the facilities, create and sync the feedstock types, sync the production runs of `keys`."""
    import uuid

    from sqlalchemy import select

    from dmrv_sync.api import sync_engine
    from dmrv_sync.db.models import Application, FeedstockType
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.demo.link import link_demo
    from dmrv_sync.settings import Settings

    settings = Settings(
        dmrv_database_url=url, isometric_base_url=emulator, isometric_requests_per_second=1000
    )
    link_demo(settings)
    with get_session_factory(url)() as session:
        feedstocks = [str(k) for k in session.scalars(select(FeedstockType.id))]
        runs = sorted(
            {
                str(k)
                for k in session.scalars(
                    select(Application.production_run_id).where(
                        Application.id.in_([uuid.UUID(k) for k in keys])
                    )
                )
            }
        )
    with sync_engine(settings) as engine:
        for entity_type, ids in (("feedstock_type", feedstocks), ("production_run", runs)):
            results = engine.sync_entities(entity_type, ids)
            failed = [r for r in results if r.status != "synced"]
            if failed:
                raise RuntimeError(f"{len(failed)} {entity_type} parents not synced: {failed[0].message}")


def measure(launcher: Launcher, size: int, workdir: Path, log: Path) -> dict[str, Any]:
    import dagster as dg

    from benchmarks.budget_shared import emulator_process
    from dmrv_sync.db.migrate import upgrade
    from dmrv_sync.db.session import get_engine
    from dmrv_sync.orchestration.sensors import PARTITIONS_PER_RUN
    from dmrv_sync_tests.fixtures.db import create_postgres_database, drop_postgres_database

    url = create_postgres_database()
    row: dict[str, Any] = {"size": size}
    try:
        upgrade(url)
        started = time.perf_counter()
        fill(url, size)
        row["fill s"] = time.perf_counter() - started
        keys = application_keys(url)
        assert len(keys) == size, (len(keys), size)
        run_keys = keys[:PARTITIONS_PER_RUN]
        dagster_home = workdir / f"dagster-{size}"
        dagster_home.mkdir()
        with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
            instance.add_dynamic_partitions("application", keys)
        with emulator_process(None, workdir / f"emulator-{size}.log") as emulator:
            common = {"url": url, "emulator": emulator}
            row["baseline"] = launcher.run("baseline", log)
            row["a"] = launcher.run("select", log, **common)
            row["c"] = launcher.run("sensor", log, **common)
            sync_parents(url, emulator, run_keys)
            row["b"] = launcher.run(
                "run",
                log,
                **common,
                dagster_home=dagster_home,
                first=run_keys[0],
                last=run_keys[-1],
                entities=len(run_keys),
            )
        row["b"]["expected"] = len(run_keys)
        return row
    finally:
        get_engine(url).dispose()
        get_engine.cache_clear()
        drop_postgres_database(url)


def print_table(rows: list[dict[str, Any]], records_per_tick: str, per_run: int) -> bool:
    print(
        f"P5 memory (postgres; peak RSS of one fresh process each, MB = ru_maxrss / 1024; "
        f"(b) one run over {per_run} partitions; (c) {records_per_tick} records per tick)"
    )
    header = (
        f"{'backlog':>10} {'fill s':>7} {'baseline MB':>12} {'(a) IDs':>9} {'(a) MB':>8} "
        f"{'(b) synced':>11} {'(b) MB':>8} {'(c) partitions':>15} {'(c) MB':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['size']:>10,} {r['fill s']:>7.1f} {r['baseline']['mb']:>12.1f} {r['a']['ids']:>9,} "
            f"{r['a']['mb']:>8.1f} {r['b']['synced']:>11,} {r['b']['mb']:>8.1f} "
            f"{r['c']['partitions']:>15,} {r['c']['mb']:>8.1f}"
        )
    first, last = rows[0], rows[-1]
    ratios = {k: last[k]["mb"] / first[k]["mb"] for k in ("baseline", "a", "b", "c")}
    print(
        f"{'ratio ' + format(last['size'], ',') + '/' + format(first['size'], ',')}: "
        f"baseline {ratios['baseline']:.2f}, (a) {ratios['a']:.2f}, (b) {ratios['b']:.2f}, "
        f"(c) {ratios['c']:.2f} (flat: <= {MAX_RATIO}); every process < {MAX_MB:.0f} MB"
    )
    ok = (
        all(r[k]["mb"] < MAX_MB for r in rows for k in ("baseline", "a", "b", "c"))
        and all(ratios[k] <= MAX_RATIO for k in ("a", "b", "c"))
        and all(r["a"]["ids"] == r["size"] for r in rows)
        and all(r["b"]["synced"] == r["b"]["expected"] for r in rows)
    )
    gap = max(abs(r[k]["mb"] - r[k]["hwm mb"]) for r in rows for k in ("baseline", "a", "b", "c"))
    print(f"cross-check: ru_maxrss and /proc/self/status VmHWM differ by at most {gap:.1f} MB")
    print("PASS" if ok else "FAIL")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database", choices=["postgres"], default="postgres")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--launcher", action="store_true", help=argparse.SUPPRESS)
    for option in ("--url", "--emulator", "--dagster-home", "--first", "--last"):
        parser.add_argument(option, help=argparse.SUPPRESS)
    parser.add_argument("--entities", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.launcher:
        return serve_launches()
    if args.child:
        figures = CHILDREN[args.child](args)
        figures["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # The same peak as the kernel keeps it for this process's memory map: a cross-check.
        status = Path("/proc/self/status").read_text()
        figures["vmhwm_kb"] = int(status.split("VmHWM:")[1].split()[0])
        print(RESULT_PREFIX + json.dumps(figures), flush=True)
        return 0
    launcher_ = Launcher()  # first, while this process is small (see `serve_launches`)

    from dmrv_sync.orchestration.sensors import DEFAULT_RECORDS_PER_TICK, PARTITIONS_PER_RUN

    rows = []
    with tempfile.TemporaryDirectory(prefix="dmrv-memory-") as tmp:
        workdir = Path(tmp)
        log = workdir / "children.log"
        try:
            for size in args.sizes:
                rows.append(measure(launcher_, size, workdir, log))
                print(f"-- {size:,} done", file=sys.stderr, flush=True)
        except Exception:
            if log.exists():
                print(log.read_text()[-5000:], file=sys.stderr)
            raise
        finally:
            launcher_.close()
    ok = print_table(rows, str(DEFAULT_RECORDS_PER_TICK), PARTITIONS_PER_RUN)
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
