"""Benchmark P3: registry requests per created object, without faults and with 10 % lost responses.

    .venv/bin/python -m benchmarks.requests_per_object [--scale 200] [--lost 0.10] [--database postgres]

The same path as benchmarks.throughput (the real Dagster daemon, sensors and entity runs against the
emulator process), twice: once with no fault, once with the emulator's `lost_response` fault (`drop`:
the request is processed, a create stores its object, then the connection closes without an answer) on
`--lost` of all API requests. Requests and created objects are the emulator's own counters
(`GET /_emulator/stats`: every /mrv/v0 request; creates that stored an object), counted from the moment
the faults are set, before seeding. Duplicates (two objects with one supplier reference) must stay 0.

Exit status 0 when requests per created object is 1.00 without faults and at most 1.15 with them, and
there are no duplicates.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.throughput import delta, sync_through_dagster

TARGETS = {"no faults": 1.0, "lost responses": 1.15}


def measure(scale: int, faults: dict[str, Any], database: str) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="dmrv-requests-"))
    try:
        result = sync_through_dagster(
            root,
            scale=scale,
            faults=faults,
            requests_per_second=1000.0,
            partitions_per_run=500,
            database=database,
        )
    except Exception:
        print(f"benchmark failed; logs under {root}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)
    requests = result["stats"]["requests"]
    before = result["before"]
    creates = requests["creates_succeeded"]["total"] - before["creates_succeeded"]["total"]
    total = requests["total"] - before["total"]
    return {
        "requests": total,
        "created": creates,
        "per object": total / creates if creates else float("inf"),
        "by route": delta(requests, before, "by_route"),
        "faults": delta(requests, before, "faults_injected"),
        "duplicates": result["stats"]["duplicate_supplier_reference_ids"]["total"],
        "settled s": result["settled s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=200, help="demo seed --scale")
    parser.add_argument("--lost", type=float, default=0.10, help="lost_response rate on every API request")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args(argv)
    cases = {
        "no faults": {"seed": 11},
        "lost responses": {"seed": 11, "lost_response": {"rate": args.lost, "mode": "drop"}},
    }
    ok = True
    print(f"\nRequests per created object through Dagster (demo scale {args.scale}, {args.database})")
    for name, faults in cases.items():
        m = measure(args.scale, faults, args.database)
        met = m["duplicates"] == 0 and round(m["per object"], 2) <= TARGETS[name]
        ok = ok and met
        print(
            f"  {name:<15} {m['requests']} requests / {m['created']} objects = {m['per object']:.3f} "
            f"(target ≤ {TARGETS[name]:.2f}) {'OK' if met else 'FAIL'}; duplicates {m['duplicates']}; "
            f"faults { ({k: v for k, v in m['faults'].items() if v}) }; settled after {m['settled s']:.0f} s"
        )
        print(f"  {'':<15} by route: {m['by route']}")
    print(f"\n{'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
