"""Both Dagster instance profiles load: the embedded default and the production one on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

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
        assert instance.run_storage.__class__.__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("application", ["a", "b"])
        assert instance.get_dynamic_partitions("application") == ["a", "b"]
        instance.dispose()
    finally:
        drop_postgres_database(url)
