"""Reliability fault matrix: the whole stack under each of ten faults, one table row per fault.

    .venv/bin/python -m benchmarks.fault_matrix [--scale 900] [--faults lost_response,sigkill,...]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

For each fault, on a fresh PostgreSQL database and a fresh emulator process:
1. `db upgrade`, `demo seed --scale N` (N applications and what they stand on, six invalid on purpose;
   about 1.19 × N entities at scale 900, 1.3 × N at 40), `demo link`;
2. the first pass, with the fault on: worker processes that sync the way a Dagster run does — each
   entity type in dependency order, `SyncEngine.sync_entities` over ranges of up to 500 selected IDs
   (what the asset body does for a partition range), under a run id;
3. the fault off, then reruns until nothing is left to do (at most `MAX_RERUNS`): after any leases the
   first pass left have expired, a `failed` pass (what `sync failed` / a backfill of the failed
   partitions does) and a `pending` pass (what the sensors do);
4. the verdict, from the emulator's own counters and the sidecar: duplicates (two objects with one
   `supplier_reference_id`), lost entities (ready but neither synced nor in error with a message),
   orphans (objects in the registry that no synced identity points at), whether it converged (every
   error left is a validation or parent block, with its message), and requests per created object.

The PostgreSQL restart runs on a throwaway cluster this command starts (initdb on a free port), never on
the shared server. Exit status 1 when a row is not 0 duplicates / 0 lost / 0 orphans / converged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchmarks.budget_shared import emulator_process
from dmrv_sync.db.base import utcnow
from dmrv_sync.db.models import ENTITY_MODELS
from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import RegistryIdentity, SyncStatus
from dmrv_sync.emulator.admin_client import EmulatorAdmin

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PARTITIONS_PER_RUN = 500  # as the sensors and backfills range them
MAX_RERUNS = 4
CLIENT_READ_TIMEOUT = 1.5  # seconds; the "slow response" fault answers after 3 s
WAIT_TIMEOUT = 600.0

# Each registry resource and the external entity types (steps) whose objects it holds.
OBJECT_TYPES = {
    "production_batches": ("production_batch",),
    "storage_locations": ("storage_location",),
    "biochar_applications": ("biochar_application",),
    "datapoints": ("datapoint_applied_biochar_mass", "datapoint_organic_carbon_fraction"),
    "ghg_entries": ("ghg_entry",),
    "ghg_statements": ("ghg_statement",),
}


# -- the worker: what a Dagster run's asset body does, in its own process --------------------------


def worker(which: str, run_id: str) -> int:
    """Sync every selected entity, types in dependency order, in ranges as Dagster runs do."""
    from dmrv_sync.api import sync_engine

    timeout = httpx.Timeout(connect=2.0, read=CLIENT_READ_TIMEOUT, write=5.0, pool=5.0)
    counts: dict[str, int] = {}
    with sync_engine(run_id=run_id, timeout=timeout, backoff_base=0.05, backoff_cap=1.0) as engine:
        for entity_type in engine.entity_order():
            selected = engine.select(entity_type, "pending" if which == "pending" else "failed")
            for start in range(0, len(selected), PARTITIONS_PER_RUN):
                for result in engine.sync_entities(entity_type, selected[start : start + PARTITIONS_PER_RUN]):
                    counts[result.status] = counts.get(result.status, 0) + 1
    print(json.dumps(counts), flush=True)
    return 0


# -- the pieces a fault needs ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, condition: Callable[[], Any], timeout: float = WAIT_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(0.05)


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own on a free port, so restarting it disturbs nobody else."""

    def __init__(self, root: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = bins[-1].parent
        self.data = root / "pgdata"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root
        root.chmod(0o755)
        self.data.mkdir()
        if self.as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._pg_ctl(
            "start", "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", *args, action)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")  # terminates every connection, as a failover or upgrade would

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"fault_matrix_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Stack:
    db_url: str
    emulator_url: str
    admin: EmulatorAdmin
    workdir: Path
    lease_seconds: float = 300.0
    cluster: ThrowawayPostgres | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DMRV_DATABASE_URL": self.db_url,
            "ISOMETRIC_BASE_URL": self.emulator_url,
            "ISOMETRIC_REQUESTS_PER_SECOND": "1000",  # the emulator's own faults are the limit here
            "SYNC_LEASE_SECONDS": str(self.lease_seconds),
        }

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "dmrv_sync.cli", *args],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dmrv-sync {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start_worker(self, which: str, run_id: str) -> subprocess.Popen[str]:
        log = (self.workdir / f"{run_id}.log").open("w", encoding="utf-8")
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fault_matrix", "worker", which, run_id],
            env=self.env(),
            cwd=Path(__file__).resolve().parents[1],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run_worker(self, which: str, run_id: str) -> int:
        process = self.start_worker(which, run_id)
        return process.wait(timeout=WAIT_TIMEOUT)

    def creates(self) -> int:
        return int(self.admin.stats()["requests"]["creates_succeeded"]["total"])


@dataclass
class Fault:
    name: str
    what: str
    faults: dict[str, Any] = field(default_factory=dict)  # emulator faults during the first pass
    lease_seconds: float = 300.0
    # Drives the first pass itself (mid-run actions); returns a note for the table. Default: one worker.
    first_pass: Callable[[Stack, Fault, int], str] | None = None
    cluster: bool = False  # needs the throwaway PostgreSQL cluster


def _one_worker(stack: Stack, fault: Fault, threshold: int) -> str:
    code = stack.run_worker("pending", f"{fault.name}-first")
    return f"first pass exit {code}"  # the injected faults are listed beside it


def _worker_past(stack: Stack, fault: Fault, threshold: int, point: str) -> subprocess.Popen[str]:
    """The first-pass worker, once it has created `threshold` objects and is still running."""
    process = stack.start_worker("pending", f"{fault.name}-first")
    wait_for(
        f"creates before the {point}", lambda: stack.creates() >= threshold or process.poll() is not None
    )
    if process.poll() is not None:
        raise RuntimeError(f"the worker finished before the {point} point: raise --scale")
    return process


def _sigkill(stack: Stack, fault: Fault, threshold: int) -> str:
    process = _worker_past(stack, fault, threshold, "kill")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with get_session_factory(stack.db_url)() as session:
        held = session.scalar(select(func.count()).where(RegistryIdentity.sync_status == SyncStatus.SYNCING))
    return f"killed after {stack.creates()} creates, {held} leases held"


def _revoked(stack: Stack, fault: Fault, threshold: int) -> str:
    process = stack.start_worker("pending", f"{fault.name}-first")
    wait_for(
        "creates before the revocation", lambda: stack.creates() >= threshold or process.poll() is not None
    )
    stack.admin.set_faults({"credentials_revoked": True})
    refused = lambda: stack.admin.stats()["requests"]["faults_injected"]["credentials_revoked"]  # noqa: E731
    wait_for("requests refused with 401", lambda: refused() >= 20 or process.poll() is not None)
    stack.admin.set_faults({})  # restored while the run goes on
    code = process.wait(timeout=WAIT_TIMEOUT)
    return f"{refused()} × 401 mid-run, then restored; first pass exit {code}"


def _race(stack: Stack, fault: Fault, threshold: int) -> str:
    processes = [stack.start_worker("pending", f"{fault.name}-first-{i}") for i in (1, 2)]
    codes = [p.wait(timeout=WAIT_TIMEOUT) for p in processes]
    outcomes = [
        (stack.workdir / f"{fault.name}-first-{i}.log").read_text().strip().splitlines()[-1:] for i in (1, 2)
    ]
    return f"two workers at once, exits {codes}, outcomes {outcomes}"


def _pg_restart(stack: Stack, fault: Fault, threshold: int) -> str:
    assert stack.cluster is not None
    process = _worker_past(stack, fault, threshold, "restart")
    restarted_at = stack.creates()
    stack.cluster.restart()
    code = process.wait(timeout=WAIT_TIMEOUT)
    return f"PostgreSQL restarted after {restarted_at} creates; first pass exit {code}"


BASELINE = Fault("baseline", "none (baseline: what converged means)")
SLOW_POSTS = {"latency": {"fixed_ms": 15, "methods": ["POST"]}}

FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "rate_limit_429",
            "429 storm with Retry-After",
            {"rate_limit": {"rate_per_second": 8, "burst": 2}},
        ),
        Fault(
            "server_errors_5xx", "5xx bursts", {"server_errors": {"rate": 0.2, "statuses": [500, 502, 503]}}
        ),
        Fault("connection_reset", "connection reset before processing", {"connection_reset": {"rate": 0.15}}),
        Fault(
            "lost_response",
            "lost responses after commit",
            {"lost_response": {"rate": 0.15, "mode": "drop", "methods": ["POST"]}},
        ),
        Fault(
            "slow_response",
            "responses slower than the client timeout",
            {"lost_response": {"rate": 0.1, "mode": "delay", "delay_seconds": 3.0, "methods": ["POST"]}},
        ),
        Fault("revoked_401", "401 mid-run, then restored", {}, first_pass=_revoked),
        Fault(
            "rejected_422",
            "422 on a subset of entities, then accepted",
            {
                "validation_errors": [
                    {
                        "path": "^/biochar_applications$",
                        "supplier_reference_id": "[0-3]$",
                        "msg": "Value error, rejected",
                    },
                    {
                        "path": "^/production_batches$",
                        "supplier_reference_id": "[0-1]$",
                        "msg": "Value error, rejected",
                    },
                ]
            },
        ),
        Fault(
            "sigkill",
            "SIGKILL of the syncing process mid-step",
            SLOW_POSTS,
            lease_seconds=3,
            first_pass=_sigkill,
        ),
        Fault(
            "postgres_restart",
            "PostgreSQL restart mid-run",
            SLOW_POSTS,
            lease_seconds=3,
            first_pass=_pg_restart,
            cluster=True,
        ),
        Fault("racing_runs", "two runs racing for the same partitions", SLOW_POSTS, first_pass=_race),
    )
}


# -- the verdict -----------------------------------------------------------------------------------


@dataclass
class Row:
    fault: Fault
    entities: int = 0
    objects: int = 0
    requests: int = 0
    duplicates: int = 0
    lost: int = 0
    orphans: int = 0
    fault_errors: int = 0  # errors left that are not validation or parent blocks
    synced: int = 0  # entities with every step in the registry
    injected: dict[str, int] = field(default_factory=dict)  # the emulator's count of faults it injected
    expected: int | None = None  # what the run without faults syncs (the baseline row)
    reruns: int = 0
    seconds: float = 0.0
    note: str = ""
    failure: str = ""

    @property
    def converged(self) -> bool:
        settled = self.fault_errors == 0 and self.lost == 0
        return settled and (self.expected is None or self.synced == self.expected)

    @property
    def ok(self) -> bool:
        return not self.failure and self.duplicates == 0 and self.orphans == 0 and self.converged


def verdict(stack: Stack, row: Row) -> None:
    from dmrv_sync.registries.catalog import build_rules
    from dmrv_sync.settings import Settings

    adapter = build_rules("isometric", Settings())
    stats = stack.admin.stats()
    row.duplicates = int(stats["duplicate_supplier_reference_ids"]["total"])
    if row.duplicates and os.environ.get("FAULT_MATRIX_DEBUG"):
        print(f"  duplicates: {stats['duplicate_supplier_reference_ids']}", file=sys.stderr)
    row.objects = int(stats["requests"]["creates_succeeded"]["total"])
    row.requests = int(stats["requests"]["total"])
    row.injected = {
        k: int(v) for k, v in stats["requests"]["faults_injected"].items() if v and k != "latency"
    }
    with get_session_factory(stack.db_url)() as session:
        identities = list(session.scalars(select(RegistryIdentity)))
        by_entity: dict[tuple[str, str], list[RegistryIdentity]] = {}
        for identity in identities:
            by_entity.setdefault((identity.entity_type, identity.entity_id), []).append(identity)
        row.entities = row.lost = row.synced = 0
        for entity_type, model in ENTITY_MODELS.items():
            steps = adapter.entities[entity_type].external_types
            for entity in session.scalars(select(model)):
                if not adapter.is_ready(entity_type, entity):
                    continue
                row.entities += 1
                rows = {r.external_entity_type: r for r in by_entity.get((entity_type, str(entity.id)), [])}
                synced = all(
                    rows.get(s) is not None and rows[s].sync_status == SyncStatus.SYNCED for s in steps
                )
                explained = any(
                    r.sync_status == SyncStatus.ERROR and r.last_sync_error for r in rows.values()
                )
                row.synced += synced
                if not (synced or explained):
                    row.lost += 1
    row.fault_errors = sum(
        1
        for r in identities
        if r.sync_status == SyncStatus.ERROR and not (r.sync_metadata or {}).get("blocked")
    ) + sum(1 for r in identities if r.sync_status in (SyncStatus.UNKNOWN, SyncStatus.SYNCING))
    row.orphans = 0
    for resource, external_types in OBJECT_TYPES.items():
        known = sum(
            1
            for r in identities
            if r.external_entity_type in external_types and r.sync_status == SyncStatus.SYNCED
        )
        row.orphans += max(0, int(stats["objects"].get(resource, 0)) - known)


def leases_expired(stack: Stack) -> bool:
    with get_session_factory(stack.db_url)() as session:
        latest = session.scalar(
            select(func.max(RegistryIdentity.lease_expires_at)).where(
                RegistryIdentity.sync_status == SyncStatus.SYNCING
            )
        )
    return latest is None or latest < utcnow() - timedelta(milliseconds=100)


def run_fault(fault: Fault, scale: int, postgres_url: str, root: Path, expected: int | None = None) -> Row:
    row = Row(fault, expected=expected)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"{fault.name}-", dir=root))
    with ExitStack() as resources:
        try:
            server_url = postgres_url
            cluster = None
            if fault.cluster:
                cluster = ThrowawayPostgres(Path(tempfile.mkdtemp(prefix="pg-", dir=root)))
                resources.callback(cluster.stop)
                server_url = cluster.url
            db_url = resources.enter_context(fresh_database(server_url))
            emulator_url = resources.enter_context(emulator_process(None, workdir / "emulator.log"))
            admin = EmulatorAdmin(emulator_url.removesuffix("/mrv/v0") + "/_emulator")
            resources.callback(admin.close)
            stack = Stack(
                db_url, emulator_url, admin, workdir, lease_seconds=fault.lease_seconds, cluster=cluster
            )
            stack.cli("db", "upgrade")
            stack.cli("demo", "seed", "--scale", str(scale))
            stack.cli("demo", "link")
            admin.set_faults({"seed": 7, **fault.faults})
            row.note = (fault.first_pass or _one_worker)(stack, fault, max(10, scale // 2))
            admin.set_faults({})
            verdict(stack, row)
            while not (row.converged and row.duplicates == 0) and row.reruns < MAX_RERUNS:
                wait_for("the first pass's leases to expire", lambda: leases_expired(stack))
                row.reruns += 1
                stack.run_worker("failed", f"{fault.name}-rerun-{row.reruns}-failed")
                stack.run_worker("pending", f"{fault.name}-rerun-{row.reruns}-pending")
                verdict(stack, row)
        except Exception as exc:  # the row says what broke; the table goes on
            row.failure = f"{type(exc).__name__}: {exc}"[:300]
    row.seconds = time.monotonic() - started
    return row


def format_table(rows: list[Row], scale: int) -> str:
    header = [
        "fault", "entities", "synced", "objects", "requests", "req/object", "duplicates", "lost", "orphans", "converged",
        "time", "what happened",
    ]  # fmt: skip
    lines = [
        [
            r.fault.what,
            str(r.entities),
            str(r.synced),
            str(r.objects),
            str(r.requests),
            f"{r.requests / r.objects:.3f}" if r.objects else "-",
            str(r.duplicates),
            str(r.lost),
            str(r.orphans),
            ("yes" if r.reruns == 0 else f"yes, after {r.reruns} rerun{'s' * (r.reruns > 1)}")
            if r.converged
            else f"NO ({r.fault_errors} errors left, {r.synced} of {r.expected} synced)",
            f"{r.seconds:.0f}s",
            r.failure or "; ".join([r.note, *(f"{n} × {k}" for k, n in r.injected.items())]),
        ]
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    table = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, ["-" * w for w in widths], *lines]
    ]
    return "\n".join([f"fault matrix, demo seed --scale {scale}, PostgreSQL, emulator process", *table])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=int, default=900, help="demo seed --scale (900: about 1,070 entities)"
    )
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}"
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("DMRV_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.faults.split(",") if name not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    rows = run_matrix([FAULTS[name] for name in args.faults.split(",")], args.scale, args.postgres_url)
    print("\n" + format_table(rows, args.scale))
    return 0 if all(r.ok for r in rows) else 1


def run_matrix(faults: list[Fault], scale: int, postgres_url: str) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as root:
        Path(root).chmod(0o755)  # the throwaway cluster's server runs as the postgres user
        print("baseline (no fault) ...", file=sys.stderr, flush=True)
        baseline = run_fault(BASELINE, scale, postgres_url, Path(root))
        rows = [baseline]
        for fault in faults:
            print(f"{fault.name} ...", file=sys.stderr, flush=True)
            rows.append(run_fault(fault, scale, postgres_url, Path(root), expected=baseline.synced))
        return rows


if __name__ == "__main__":
    sys.exit(main())
