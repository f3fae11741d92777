"""The Dagster definitions load: a wiring mistake fails here, not in the UI."""

from __future__ import annotations

import dagster as dg

from dmrv_sync.definitions import defs


def test_definitions_load() -> None:
    assert isinstance(defs, dg.Definitions)
    defs.get_repository_def().load_all_definitions()
