"""The sync core as a user drives it: the `dmrv-sync` command as real processes, against the emulator as
a real separate process, on SQLite and PostgreSQL. Faults, a SIGKILL mid-run, and the figures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import RegistryIdentity, SyncStatus
from dmrv_sync_tests.fixtures.emulator import RunningEmulator

pytestmark = pytest.mark.slow

# Each registry resource and the external entity types (steps) whose objects it holds.
OBJECT_TYPES = [
    ("production_batches", ("production_batch",)),
    ("storage_locations", ("storage_location",)),
    ("biochar_applications", ("biochar_application",)),
    ("datapoints", ("datapoint_applied_biochar_mass", "datapoint_organic_carbon_fraction")),
    ("ghg_entries", ("ghg_entry",)),
    ("ghg_statements", ("ghg_statement",)),
]


class Cli:
    def __init__(self, db_url: str, emulator: RunningEmulator, cwd: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "DMRV_DATABASE_URL": db_url,
            "ISOMETRIC_BASE_URL": emulator.base_url,
            "ISOMETRIC_REQUESTS_PER_SECOND": "1000",
            **env,
        }
        self.cwd = cwd

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dmrv_sync.cli", *args]

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            self.command(*args), env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"dmrv-sync {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )


def _identities(db_url: str) -> list[RegistryIdentity]:
    with get_session_factory(db_url)() as session:
        return list(session.scalars(select(RegistryIdentity)))


def _assert_exactly_once(db_url: str, stats: dict[str, Any]) -> None:
    """0 duplicates, nothing unsettled, and every registry object known locally as synced, once."""
    assert stats["duplicate_supplier_reference_ids"]["total"] == 0
    rows = _identities(db_url)
    unsettled = [r for r in rows if r.sync_status in (SyncStatus.UNKNOWN, SyncStatus.SYNCING)]
    assert not unsettled, [(r.entity_type, r.external_entity_type, r.last_sync_error) for r in unsettled]
    not_blocked = [
        r for r in rows if r.sync_status == SyncStatus.ERROR and not (r.sync_metadata or {}).get("blocked")
    ]
    assert not not_blocked, [r.last_sync_error for r in not_blocked]
    for resource, external_types in OBJECT_TYPES:
        synced = sum(
            1 for r in rows if r.external_entity_type in external_types and r.sync_status == SyncStatus.SYNCED
        )
        assert stats["objects"][resource] == synced, resource


def _settled(db_url: str) -> bool:
    return all(
        r.sync_status not in (SyncStatus.UNKNOWN, SyncStatus.SYNCING)
        and (r.sync_status != SyncStatus.ERROR or (r.sync_metadata or {}).get("blocked"))
        for r in _identities(db_url)
    )


def _prepare(cli: Cli, scale: int) -> str:
    cli("db", "upgrade")
    seeded = cli("demo", "seed", "--scale", str(scale))
    cli("demo", "link")
    return seeded


def test_seed_link_sync_pending_twice(
    db_url: str, emulator_process: RunningEmulator, tmp_path: Path, figures: list[str]
) -> None:
    cli = Cli(db_url, emulator_process, tmp_path)
    seeded = _prepare(cli, 200)
    invalid_ids = [line.split()[1].rstrip(":") for line in seeded.splitlines() if line.startswith("  ")]
    assert len(invalid_ids) == 6

    output = cli("sync", "pending")
    for entity_id in invalid_ids:
        assert entity_id in output, f"invalid record {entity_id} is listed with its message"
    stats = emulator_process.admin.stats()
    _assert_exactly_once(db_url, stats)
    with get_session_factory(db_url)() as session:
        synced = session.scalar(
            select(func.count())
            .select_from(RegistryIdentity)
            .where(RegistryIdentity.sync_status == SyncStatus.SYNCED)
        )
    assert synced and synced > 300
    for entity_id in invalid_ids:
        errors = [
            r for r in _identities(db_url) if r.entity_id == entity_id and r.sync_status == SyncStatus.ERROR
        ]
        assert errors and entity_id in (errors[0].last_sync_error or "")

    creates = stats["requests"]["creates_succeeded"]["total"]
    assert "nothing to sync" in cli("sync", "pending")
    after = emulator_process.admin.stats()
    assert after["requests"]["creates_succeeded"]["total"] == creates, (
        "a second sync pending creates 0 objects"
    )
    figures.append(
        f"sync pending, scale 200 ({db_url.split(':')[0]}): {creates} objects created with "
        f"{stats['requests']['total']} requests; second run: {after['requests']['total'] - stats['requests']['total']} requests"
    )


def test_lost_responses_on_a_fifth_of_creates(
    db_url: str, emulator_process_factory: Any, tmp_path: Path, figures: list[str]
) -> None:
    emulator = emulator_process_factory(
        "--faults", '{"seed": 11, "lost_response": {"rate": 0.2, "mode": "drop", "methods": ["POST"]}}'
    )
    cli = Cli(db_url, emulator, tmp_path)
    _prepare(cli, 200)
    cli("sync", "pending")
    rounds = 0
    while not _settled(db_url) and rounds < 6:
        rounds += 1
        cli("sync", "failed")
    stats = emulator.admin.stats()
    assert stats["requests"]["faults_injected"]["lost_response"] > 50
    _assert_exactly_once(db_url, stats)
    per_object = stats["requests"]["total"] / stats["requests"]["creates_succeeded"]["total"]
    figures.append(
        f"lost responses on 20% of creates, scale 200 ({db_url.split(':')[0]}): "
        f"{stats['requests']['faults_injected']['lost_response']} answers lost, 0 duplicates, "
        f"{stats['requests']['total']} requests / {stats['requests']['creates_succeeded']['total']} objects = "
        f"{per_object:.3f} requests per created object, settled after sync pending + {rounds} x sync failed"
    )
    assert per_object <= 1.3


def test_sigkill_mid_run_then_rerun_after_the_lease_expires(
    db_url: str, emulator_process_factory: Any, tmp_path: Path, figures: list[str]
) -> None:
    emulator = emulator_process_factory("--faults", '{"latency": {"fixed_ms": 40, "jitter_ms": 0}}')
    cli = Cli(db_url, emulator, tmp_path, SYNC_LEASE_SECONDS="2")
    _prepare(cli, 120)
    victim = cli.start("sync", "pending")
    deadline = time.monotonic() + 120
    while emulator.admin.stats()["requests"]["creates_succeeded"].get("total", 0) < 40:
        assert victim.poll() is None, (
            f"the run ended before it could be killed: {victim.stderr.read() if victim.stderr else ''}"
        )
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = emulator.admin.stats()["requests"]["creates_succeeded"]["total"]
    leases = [r.lease_expires_at for r in _identities(db_url) if r.sync_status == SyncStatus.SYNCING]
    assert leases, "the kill left entities mid-step (their leases must expire before anyone takes over)"
    # Wait out the dead worker's leases: a known deadline, not a guess.
    wait = (max(t for t in leases if t is not None) - datetime.now(UTC)).total_seconds()
    if wait > 0:
        time.sleep(wait + 0.1)

    cli("sync", "pending")
    rounds = 0
    while not _settled(db_url) and rounds < 4:
        rounds += 1
        cli("sync", "failed")
    stats = emulator.admin.stats()
    _assert_exactly_once(db_url, stats)
    figures.append(
        f"SIGKILL mid-run ({db_url.split(':')[0]}): killed after {killed_at} creates with {len(leases)} leases held; "
        f"rerun settled everything with 0 duplicates ({stats['objects']['production_batches']} batches, "
        f"{stats['objects']['biochar_applications']} applications)"
    )
