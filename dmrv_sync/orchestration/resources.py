"""Resources: the DMRV database and one registry credential. Secrets arrive through `dg.EnvVar`, so
they are resolved in the run process and never stored in run config or shown in the UI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import SecretStr

from dmrv_sync.api import sync_engine
from dmrv_sync.settings import Settings, get_settings
from dmrv_sync.sync.engine import SyncEngine


class DmrvDatabase(dg.ConfigurableResource):
    """The supplier's DMRV database (and the sync state beside it)."""

    url: str | None = None  # default: DMRV_DATABASE_URL, or the embedded SQLite file

    def database_url(self) -> str:
        return self.url or get_settings().database_url


class IsometricRegistry(dg.ConfigurableResource):
    """One Isometric Certify credential. Unset fields fall back to the environment's settings."""

    client_secret: str | None = None
    access_token: str | None = None
    project_id: str | None = None
    base_url: str | None = None
    requests_per_second: float | None = None

    def settings(self, database: DmrvDatabase) -> Settings:
        base = get_settings()
        overrides: dict[str, Any] = {"dmrv_database_url": database.database_url()}
        if self.client_secret:
            overrides["isometric_client_secret"] = SecretStr(self.client_secret)
        if self.access_token:
            overrides["isometric_access_token"] = SecretStr(self.access_token)
        if self.project_id:
            overrides["isometric_project_id"] = self.project_id
        if self.base_url:
            overrides["isometric_base_url"] = self.base_url
        if self.requests_per_second:
            overrides["isometric_requests_per_second"] = self.requests_per_second
        return base.model_copy(update=overrides)

    @contextmanager
    def engine(self, database: DmrvDatabase, *, run_id: str | None = None) -> Iterator[SyncEngine]:
        with sync_engine(self.settings(database), registry="isometric", run_id=run_id) as engine:
            yield engine
