"""Dagster's PostgreSQL storage, holding one connection open per storage and process.

dagster-postgres opens a new database connection for every statement outside the webserver
(`NullPool`): every event a run logs (one materialization per entity, one "planned" event per
partition when a run is created) costs a connection set-up, ~2.4 ms on an idle machine and most of
the daemon's and the run processes' time under load (py-spy, `benchmarks.dagster_runs`: 37 % of
the daemon's samples in `psycopg2.connect`). These classes are the same storages with a pool of one
connection (more open while concurrent, closed when returned: no cap, as before), checked with a
ping before use and recycled hourly. The webserver still re-tunes them (`optimize_for_webserver`).

The schedule storage (sensor cursors and ticks: a few statements a tick) stays dagster-postgres' own:
`DagsterInstance.dispose()` does not dispose it, so a short-lived instance would keep a pooled
connection open until garbage collection.

Configured in `deploy/dagster.yaml` as `run_storage` / `event_log_storage` with the same
`postgres_db` / `postgres_url` config as dagster-postgres' own `storage: postgres:`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 1  # idle connections kept per storage and process (two storages: two per process)
POOL_RECYCLE_SECONDS = 3600


def _pooled(storage: Any) -> None:
    """Swap the storage's connection-per-statement engine for a pooled one (same URL and options)."""
    null_pool = storage._engine
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": POOL_SIZE,
        "max_overflow": -1,  # concurrent users beyond the pool get their own connection, as before
        "pool_recycle": POOL_RECYCLE_SECONDS,
        "pool_pre_ping": True,  # a restarted server costs one failed ping, not a failed statement
    }
    options = null_pool.url.query.get("options")
    if options:
        kwargs["connect_args"] = {"options": options}
    storage._engine = create_pg_engine(storage.postgres_url, storage._token_provider, **kwargs)
    null_pool.dispose()


class _Pooled:
    """Mixed in before a dagster-postgres storage class: the same storage, its engine pooled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _pooled(self)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Any:
        # dagster-postgres' own from_config_value builds its base class, not `cls`.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()  # type: ignore[attr-defined]


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    pass


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    pass


def storage_config(postgres_db: Mapping[str, Any]) -> dict[str, Any]:
    """The dagster.yaml blocks for these storages over one `postgres_db` config."""
    config = {"postgres_db": dict(postgres_db)}
    return {
        "run_storage": {"module": __name__, "class": "PooledPostgresRunStorage", "config": config},
        "event_log_storage": {"module": __name__, "class": "PooledPostgresEventLogStorage", "config": config},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": config,
        },
    }
