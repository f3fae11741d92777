"""The reliability fault matrix at a reduced scale (the full one: `python -m benchmarks.fault_matrix`).

Every fault of the matrix — 429 storms, 5xx bursts, connection resets, lost and slow responses, a 401
mid-run, 422s on a subset, SIGKILL mid-step, a PostgreSQL restart, two racing runs — against the emulator
as a real process and PostgreSQL, with the sync core run in worker processes the way a Dagster run drives
it. Each row must end with 0 duplicates, 0 lost entities, 0 orphaned registry objects, and the same
entities synced as the run without faults.
"""

from __future__ import annotations

import pytest

from benchmarks.fault_matrix import FAULTS, format_table, run_matrix
from dmrv_sync_tests.fixtures.db import POSTGRES_ADMIN_URL, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# 40 applications: 52 entities, 63 registry objects; large enough that every mid-run fault lands mid-run.
SCALE = 40


def test_every_fault_ends_with_no_duplicate_nothing_lost_and_converges(figures: list[str]) -> None:
    require_postgres()
    rows = run_matrix(list(FAULTS.values()), SCALE, POSTGRES_ADMIN_URL)
    table = format_table(rows, SCALE)
    figures.append(table)
    assert len(rows) == len(FAULTS) + 1  # the baseline, then each fault
    baseline = rows[0]
    assert baseline.ok and baseline.synced > 30, table
    for row in rows[1:]:
        assert not row.failure, f"{row.fault.name}: {row.failure}\n{table}"
        assert row.duplicates == 0 and row.orphans == 0, f"{row.fault.name}: created twice\n{table}"
        assert row.lost == 0, f"{row.fault.name}: entities lost\n{table}"
        assert row.converged, f"{row.fault.name}: did not converge\n{table}"
    by_name = {row.fault.name: row for row in rows}
    injected = {
        "rate_limit_429": "rate_limit",
        "server_errors_5xx": "server_error",
        "connection_reset": "connection_reset",
        "lost_response": "lost_response",
        "slow_response": "lost_response",
        "revoked_401": "credentials_revoked",
        "rejected_422": "validation_error",
    }
    for name, kind in injected.items():
        assert by_name[name].injected.get(kind, 0) > 0, f"{name}: the emulator never injected {kind}\n{table}"
    assert "× 401" in by_name["revoked_401"].note
    assert "killed after" in by_name["sigkill"].note
    assert "restarted after" in by_name["postgres_restart"].note
