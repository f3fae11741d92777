"""Benchmark P1: end-to-end throughput against the registry's rate limit, through the real Dagster stack.

    .venv/bin/python -m benchmarks.throughput [--rate 2 --scale 40] [--rate 50 --scale 800]
                                              [--latency-ms 50 --jitter-ms 100] [--database postgres]

The production path, each part a real process (dmrv_sync_tests/fixtures/dagster.py): `dagster-daemon run`
ticking the entity sensors and launching each run as a subprocess, the entity runs syncing through the
sync core, and the Certify emulator as a separate process that enforces a token bucket of `--rate`
requests/s with a bucket of 1 (no burst) and adds `--latency-ms` + uniform 0..`--jitter-ms` to every
API request. Every process paces itself with the shared request budget in the DMRV database at
ISOMETRIC_REQUESTS_PER_SECOND = `--rate`.

1. Seeds `demo seed --scale N` without the invalid records (every production run complete, every
   application applied, so everything is pending), links the facilities and feedstock types.
2. DMRV_PARTITIONS_PER_RUN is set to half the applications, so the application sensor requests (at
   least) two ranged runs that run at the same time and share the budget (max_concurrent_runs 4 and no
   pool limit on the test instance).
3. Waits until the sensors have nothing left to request.

Busy period: from the arrival of the first registry API request to the arrival of the last one, read
from the emulator's own request log (arrival = logged at answer − the time it took). Achieved rate =
(requests − 1) / busy period, i.e. the mean interval between requests, which a perfect client holds at
exactly 1 / rate. The 429 count comes from the emulator's counters (`GET /_emulator/stats`): with
pacing from the shared budget there should be none.

Exit status 0 when the achieved rate is at least 95 % of `--rate` and no request met a 429.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.95
# "2026-11-22 20:41:53,123 dmrv_sync.emulator GET /mrv/v0/production_batches -> 201 (103 ms)"
LOG_LINE = re.compile(r"^(\S+ \S+) dmrv_sync\.emulator (\w+) (/mrv/v0\S*) -> (.+) \((\d+) ms\)$")


def sync_through_dagster(
    root: Path,
    *,
    scale: int,
    faults: dict[str, Any],
    requests_per_second: float,
    partitions_per_run: int,
    database: str = "postgres",
    sensor_interval: int = 2,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Seed, link and let the sensors push everything against an emulator with `faults`; return the
    emulator's counters (the API requests made after the faults were set) and its request log."""
    from benchmarks.dagster_runs import seed_pending_applications
    from dmrv_sync.demo.link import link_demo
    from dmrv_sync.settings import Settings
    from dmrv_sync_tests.fixtures.dagster import start_dagster_stack, wait_until_settled

    env = {
        "DMRV_SENSOR_INTERVAL_SECONDS": str(sensor_interval),
        "DMRV_PARTITIONS_PER_RUN": str(partitions_per_run),
        "ISOMETRIC_REQUESTS_PER_SECOND": str(requests_per_second),
    }
    # No --quiet: the emulator's request log is where the arrival times come from.
    with start_dagster_stack(
        root, database=database, extra_env=env, emulator_args=(), webserver=False
    ) as stack:
        stack.emulator.admin.set_faults(faults)
        before = stack.emulator.admin.stats()["requests"]
        seeded = seed_pending_applications(stack.dmrv_db_url, scale)
        link_demo(Settings(dmrv_database_url=stack.dmrv_db_url, isometric_base_url=stack.emulator.base_url))
        started = time.time()
        print(f"seeded {seeded}; waiting for the sensors ...", file=sys.stderr, flush=True)
        wait_until_settled(stack, since=started, timeout=timeout)
        stats = stack.emulator.admin.stats()
        runs = [r for r in stack.runs() if "dmrv/entity_type" in r.dagster_run.tags]
        log_path = stack.log_paths["emulator"]
        return {
            "seeded": seeded,
            "settled s": time.time() - started,
            "before": before,
            "stats": stats,
            "arrivals": request_arrivals(log_path, since=started - 1.0),
            "runs": [
                (
                    r.dagster_run.tags["dmrv/entity_type"],
                    int(r.dagster_run.tags.get("dmrv/entities", 0)),
                    r.start_time,
                    r.end_time,
                    r.dagster_run.status.value,
                )
                for r in runs
            ],
        }


def request_arrivals(log_path: Path, *, since: float) -> list[tuple[float, str]]:
    """(arrival time, status) of every registry API request in the emulator's log, oldest first."""
    arrivals = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        logged = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        arrived = logged - int(match[5]) / 1000
        if arrived >= since:
            arrivals.append((arrived, match[4]))
    return sorted(arrivals)


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> dict[str, int]:
    return {k: v - before.get(key, {}).get(k, 0) for k, v in after.get(key, {}).items() if isinstance(v, int)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="Registry limit, requests/s (burst 1).")
    parser.add_argument("--scale", type=int, default=None, help="demo seed --scale (default: by rate).")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--jitter-ms", type=float, default=100.0)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--sensor-interval", type=int, default=2, help="DMRV_SENSOR_INTERVAL_SECONDS")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (logs).")
    args = parser.parse_args(argv)
    scale = args.scale or (40 if args.rate <= 5 else 800)
    faults = {
        "seed": 7,
        "latency": {"fixed_ms": args.latency_ms, "jitter_ms": args.jitter_ms},
        "rate_limit": {"rate_per_second": args.rate, "burst": 1},
    }
    root = Path(tempfile.mkdtemp(prefix="dmrv-throughput-"))
    try:
        result = sync_through_dagster(
            root,
            scale=scale,
            faults=faults,
            requests_per_second=args.rate,
            partitions_per_run=max(1, math.ceil(scale / 2)),
            database=args.database,
            sensor_interval=args.sensor_interval,
        )
    except Exception:
        print(f"benchmark failed; logs under {root}", file=sys.stderr)
        raise
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return report(args, scale, result)


def report(args: argparse.Namespace, scale: int, result: dict[str, Any]) -> int:
    arrivals = result["arrivals"]
    statuses = delta(result["stats"]["requests"], result["before"], "by_status")
    total = result["stats"]["requests"]["total"] - result["before"]["total"]
    too_many = statuses.get("429", 0)
    times = [t for t, _ in arrivals]
    busy = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / busy if busy > 0 else 0.0
    gaps = sorted(((b - a, a - times[0]) for a, b in zip(times, times[1:], strict=False)), reverse=True)[:3]
    overlap = parallel_seconds(result["runs"], kind="application")
    per_type: dict[str, list[int]] = {}
    for entity_type, entities, *_ in result["runs"]:
        per_type.setdefault(entity_type, []).append(entities)
    rows = [
        (
            "registry limit",
            f"{args.rate:g} req/s, burst 1; latency {args.latency_ms:g}+0..{args.jitter_ms:g} ms",
        ),
        ("seeded", ", ".join(f"{n} {k}" for k, n in result["seeded"].items())),
        ("runs (partitions each)", "; ".join(f"{k} {v}" for k, v in per_type.items())),
        ("application runs running at once", f"{overlap:.1f} s with two or more"),
        ("API requests (emulator counters / log)", f"{total} / {len(times)}"),
        ("responses by status", json.dumps(dict(sorted(statuses.items())))),
        ("busy period (first → last request)", f"{busy:.1f} s"),
        (
            "achieved rate (requests − 1) / busy",
            f"{achieved:.2f} req/s = {100 * achieved / args.rate:.1f} % of the limit",
        ),
        ("longest gaps between requests", ", ".join(f"{g:.1f} s at +{at:.0f} s" for g, at in gaps)),
        ("429 responses", too_many),
        ("sensors settled after", f"{result['settled s']:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nThroughput through Dagster at {args.rate:g} req/s (demo scale {scale}, {args.database})")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    ok = too_many == 0 and achieved >= TARGET_RATIO * args.rate
    print(
        f"\n{'OK' if ok else 'FAIL'}: {100 * achieved / args.rate:.1f} % of the limit over the busy period "
        f"(target ≥ {100 * TARGET_RATIO:.0f} %), {too_many} × 429 (target 0)"
    )
    return 0 if ok else 1


def parallel_seconds(runs: list[tuple[str, int, float, float, str]], *, kind: str) -> float:
    """Seconds during which at least two runs of `kind` were running."""
    edges = sorted(
        [(start, 1) for t, _, start, end, _ in runs if t == kind and end]
        + [(end, -1) for t, _, start, end, _ in runs if t == kind and end]
    )
    depth, since, total = 0, 0.0, 0.0
    for at, step in edges:
        if depth >= 2:
            total += at - since
        depth += step
        since = at
    return total


if __name__ == "__main__":
    sys.exit(main())
