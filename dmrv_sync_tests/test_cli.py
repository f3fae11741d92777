"""The command line as a user runs it: real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def dmrv_sync(
    *args: str, url: str, cwd: os.PathLike[str] | str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DMRV_DATABASE_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "dmrv_sync.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"dmrv-sync {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def test_upgrade_seed_status(empty_db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = dmrv_sync("db", "upgrade", url=empty_db_url, cwd=tmp_path)
    assert "upgraded from an empty database to 0001" in first.stdout
    second = dmrv_sync("db", "upgrade", url=empty_db_url, cwd=tmp_path)
    assert "nothing to do" in second.stdout

    seeded = dmrv_sync("demo", "seed", "--scale", "100", url=empty_db_url, cwd=tmp_path)
    assert "100 application" in seeded.stdout
    assert "latitude 123.4 is outside -90..90" in seeded.stdout

    status = dmrv_sync("status", "--json", url=empty_db_url, cwd=tmp_path)
    assert json.loads(status.stdout) == {}


def test_commands_on_an_unmigrated_database_say_what_to_do(empty_db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = dmrv_sync("demo", "seed", "--scale", "5", url=empty_db_url, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "run `dmrv-sync db upgrade` first" in result.stderr


def test_status_prints_counts_per_registry_type_and_status(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.identity import IdentityService

    service = IdentityService(get_session_factory(db_url))
    for i in range(3):
        service.get_or_create_registry_identity("production_run", f"r{i}", "isometric", "production_batch")
    claim = service.mark_syncing(
        service.get_or_create_registry_identity("application", "a1", "isometric", "storage_location").id, "w"
    )
    assert claim is not None
    service.mark_synced(claim, "slc_1AAAAAAAAAAAAAAA")

    as_json = json.loads(dmrv_sync("status", "--json", url=db_url, cwd=tmp_path).stdout)
    assert as_json == {"isometric": {"production_batch": {"pending": 3}, "storage_location": {"synced": 1}}}
    table = dmrv_sync("status", url=db_url, cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["registry", "external", "type", "pending", "synced", "total"]
    assert table[2].split() == ["isometric", "production_batch", "3", "0", "3"]
