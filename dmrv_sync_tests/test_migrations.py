"""Migrations build exactly the schema the models describe, the same way on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dmrv_sync.db import models, sync_state  # noqa: F401  (registers the tables)
from dmrv_sync.db.base import Base
from dmrv_sync.db.migrate import current_revision, head_revision, upgrade
from dmrv_sync.db.session import get_engine


def test_upgrade_is_idempotent_and_matches_the_models(empty_db_url: str) -> None:
    assert upgrade(empty_db_url) == (None, head_revision())
    assert upgrade(empty_db_url) == (head_revision(), head_revision()), "a second upgrade is a no-op"
    assert current_revision(empty_db_url) == head_revision()
    with get_engine(empty_db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree; write a migration: {diff}"
