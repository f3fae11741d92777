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


def test_status_prints_where_entities_stand_and_counts_per_registry_type_and_status(
    db_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.demo.seed import seed_demo_data
    from dmrv_sync.identity import IdentityService

    sessions = get_session_factory(db_url)
    seed_demo_data(sessions, scale=5, seed=1)  # 5 applications, 2 production runs, ...
    service = IdentityService(sessions)
    for i in range(3):
        service.get_or_create_registry_identity("production_run", f"r{i}", "isometric", "production_batch")

    def settle(entity_type: str, entity_id: str, step: str, external_id: str | None) -> None:
        claim = service.mark_syncing(
            service.get_or_create_registry_identity(entity_type, entity_id, "isometric", step).id, "w"
        )
        assert claim is not None
        if external_id is None:
            service.mark_error(claim, "rejected")
        else:
            service.mark_synced(claim, external_id)

    settle("production_run", "r3", "production_batch", "pbt_1AAAAAAAAAAAAAAA")
    settle("production_run", "r4", "production_batch", None)
    settle("application", "a1", "storage_location", "slc_1AAAAAAAAAAAAAAA")  # 1 of its 2 steps

    as_json = json.loads(dmrv_sync("status", "--json", url=db_url, cwd=tmp_path).stdout)
    assert as_json == {
        "isometric": {
            "production_batch": {"pending": 3, "synced": 1, "error": 1},
            "storage_location": {"synced": 1},
        }
    }
    lines = dmrv_sync("status", url=db_url, cwd=tmp_path).stdout.splitlines()
    assert lines[0].split() == [
        "registry", "local", "records", "total", "synced", "in", "progress", "unknown", "error", "drifted", "not",
        "started",
    ]  # fmt: skip
    by_type = {line.split()[1]: line.split()[2:] for line in lines[2:7]}
    # production runs: 3 pending (in progress), 1 synced, 1 error; application: 1 of 2 steps in (in progress)
    assert by_type["production_run"][1:6] == ["1", "3", "0", "1", "0"]
    assert by_type["application"][:6] == ["5", "0", "1", "0", "0", "0"]
    assert by_type["application"][6] == "4"  # the other four: not started
    objects = lines[lines.index("") + 1 :]
    assert objects[0].split() == ["registry", "external", "type", "error", "pending", "synced", "total"]
    assert objects[2].split() == ["isometric", "production_batch", "1", "3", "1", "5"]
