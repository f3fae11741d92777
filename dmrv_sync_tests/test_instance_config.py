"""Both Dagster instance profiles load: the embedded default and the production one on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from dmrv_sync_tests.fixtures.db import create_postgres_database, drop_postgres_database

ROOT = Path(__file__).resolve().parents[1]


def _load(home: Path) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def test_embedded_profile_loads(tmp_path: Path) -> None:
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = _load(tmp_path)
    assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
    assert instance.run_retries_enabled and not instance.run_retries_retry_on_asset_or_op_failure
    instance.dispose()


@pytest.mark.postgres
def test_production_profile_loads_on_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = create_postgres_database()
    try:
        parts = make_url(url)
        monkeypatch.setenv("DAGSTER_PG_HOST", parts.host or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_PORT", str(parts.port or 5432))
        monkeypatch.setenv("DAGSTER_PG_USER", parts.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", parts.password or "")
        monkeypatch.setenv("DAGSTER_PG_DB", parts.database or "")
        shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
        instance = _load(tmp_path)
        assert instance.run_storage.__class__.__name__ == "PooledPostgresRunStorage"
        instance.add_dynamic_partitions("application", ["a", "b"])
        assert instance.get_dynamic_partitions("application") == ["a", "b"]

        # The run and event log storages keep their connection: successive statements run on one
        # server backend (out of the box, dagster-postgres connects anew for each), and the instance's
        # dispose() closes it. The schedule storage, which dispose() leaves alone, keeps none.
        storages = [instance.run_storage, instance.event_log_storage]
        backends = [[_backend_pid(storage) for _ in range(3)] for storage in storages]
        assert all(len(set(pids)) == 1 for pids in backends), backends
        schedule = [_backend_pid(instance.schedule_storage) for _ in range(3)]
        assert len(set(schedule)) > 1, schedule
        instance.dispose()
        open_backends = {pids[0] for pids in backends} & _backends(url)
        assert not open_backends, f"connections left open after dispose: {open_backends}"
    finally:
        drop_postgres_database(url)


def _backend_pid(storage: Any) -> int:
    from sqlalchemy import text

    connect = getattr(storage, "connect", None) or storage._connect  # the event log storage's is private
    with connect() as conn:
        return int(conn.execute(text("select pg_backend_pid()")).scalar_one())


def _backends(url: str) -> set[int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(
                conn.scalars(text("select pid from pg_stat_activity where datname = current_database()"))
            )
    finally:
        engine.dispose()
