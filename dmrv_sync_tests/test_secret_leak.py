"""Secrets never reach logs, CLI output, Dagster events, audit rows or the database.

The whole flow runs with recognisable credentials — the emulator as a separate process, the CLI as real
processes on a PostgreSQL DMRV database, Dagster ranged runs of every asset on a temp-dir instance —
including paths that produce exception texts (401 with a wrong token, 5xx, 422). Then every text and
byte the flow left behind is searched for the secrets and their base64 and URL-encoded forms.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dmrv_sync.db.models import ProductionRun
from dmrv_sync.db.session import get_session_factory
from dmrv_sync.orchestration.resources import IsometricRegistry
from dmrv_sync.settings import Settings
from dmrv_sync_tests.fixtures.emulator import RunningEmulator
from dmrv_sync_tests.fixtures.sync import SyncWorld
from dmrv_sync_tests.test_orchestration import Harness

CLIENT_SECRET = "sekret-CLIENT-7f3a91c2e4b8d5f0"
ACCESS_TOKEN = "sekret-TOKEN-c81e4b7a20f9d3e6"
WRONG_TOKEN = "sekret-WRONGTOKEN-5d2a9e71b3c4"
SECRETS = (CLIENT_SECRET, ACCESS_TOKEN, WRONG_TOKEN)
ENTITY_TYPES = ("facility", "feedstock_type", "production_run", "application", "credit_batch")

pytestmark = pytest.mark.postgres


def needles(secrets: Iterable[str]) -> dict[str, bytes]:
    """Each secret as it could leak: plain, base64 (std and URL-safe), URL-encoded, in a bearer header."""
    forms: dict[str, bytes] = {}
    for secret in secrets:
        raw = secret.encode()
        forms[f"{secret}"] = raw
        forms[f"base64({secret})"] = base64.b64encode(raw).rstrip(b"=")
        forms[f"urlsafe-base64({secret})"] = base64.urlsafe_b64encode(raw).rstrip(b"=")
        forms[f"url({secret})"] = quote(secret, safe="").encode()
        forms[f"url+({secret})"] = quote_plus(secret).encode()
    return forms


class Scanner:
    """Collects places (name -> bytes) and reports every needle found in them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.needles = needles(secrets)
        self.places: dict[str, bytes] = {}

    def add(self, place: str, content: str | bytes) -> None:
        data = content.encode("utf-8", "backslashreplace") if isinstance(content, str) else content
        self.places[place] = self.places.get(place, b"") + data

    def add_tree(self, prefix: str, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(f"{prefix}/{path.relative_to(root)}", path.read_bytes())

    def hits(self) -> list[str]:
        return [
            f"{form} in {place}"
            for place, data in self.places.items()
            for form, needle in self.needles.items()
            if needle in data
        ]

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.places.values())


def test_the_scanner_finds_a_planted_secret_in_every_form() -> None:
    scanner = Scanner([CLIENT_SECRET])
    scanner.add("clean", "nothing to see")
    scanner.add("plain", f"error: {CLIENT_SECRET}")
    scanner.add("b64", base64.b64encode(f"x{CLIENT_SECRET}".encode()[1:]))
    scanner.add("url", f"https://h/?s={quote(CLIENT_SECRET, safe='')}")
    found = {hit.split(" in ")[1] for hit in scanner.hits()}
    assert found == {"plain", "b64", "url"}


def test_no_secret_reaches_logs_output_events_or_the_databases(
    postgres_db_url: str,
    emulator_process_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    figures: list[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ISOMETRIC_CLIENT_SECRET", CLIENT_SECRET)  # the emulator process inherits these
    monkeypatch.setenv("ISOMETRIC_ACCESS_TOKEN", ACCESS_TOKEN)
    emulator: RunningEmulator = emulator_process_factory()
    scanner = Scanner(SECRETS)
    env = {
        **os.environ,
        "DMRV_DATABASE_URL": postgres_db_url,
        "ISOMETRIC_BASE_URL": emulator.base_url,
        "ISOMETRIC_REQUESTS_PER_SECOND": "1000",
    }

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "dmrv_sync.cli", *args],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        scanner.add(f"cli {' '.join(args)} stdout", result.stdout)
        scanner.add(f"cli {' '.join(args)} stderr", result.stderr)
        return result

    assert cli("demo", "seed", "--scale", "40").returncode == 0
    assert cli("demo", "link").returncode == 0
    # A wrong token: every call answered 401, the error texts stored on the entities.
    refused = cli("sync", "pending", ISOMETRIC_ACCESS_TOKEN=WRONG_TOKEN)
    assert "refused the credentials" in refused.stdout + refused.stderr

    # Dagster: sensors and ranged runs of every asset, with 5xx and 422 answers on some calls.
    emulator.admin.set_faults(
        {"seed": 3, "server_errors": {"rate": 0.15}, "validation_errors": [{"rate": 0.1}]}
    )
    settings = Settings(dmrv_database_url=postgres_db_url, isometric_base_url=emulator.base_url)
    world = SyncWorld(postgres_db_url, emulator, settings)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        harness = Harness(world, instance)
        harness.resources["isometric_registry"] = IsometricRegistry(
            client_secret=dg.EnvVar("ISOMETRIC_CLIENT_SECRET"),
            access_token=dg.EnvVar("ISOMETRIC_ACCESS_TOKEN"),
            base_url=emulator.base_url,
            requests_per_second=1000,
        )
        results = [r for entity_type in ENTITY_TYPES for r in harness.push(entity_type)]
        assert results and any(not r.success for r in results)  # the faults and invalid records failed some
        emulator.admin.set_faults({})
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                scanner.add(f"dagster event log {run.run_id}", dg.serialize_value(entry))
        for result in results:
            for event in result.all_events:
                scanner.add("dagster execution events", repr(event))
    scanner.add_tree("dagster storage and compute logs", dagster_home)

    with get_session_factory(postgres_db_url)() as session:
        run_id = str(session.scalars(select(ProductionRun.id)).first())
    assert cli("plan", "production_run", run_id).returncode == 0
    assert cli("sync", "failed").returncode in (0, 1)
    assert cli("status").returncode == 0
    assert cli("status", "--json").returncode == 0

    scanner.add("captured logs", caplog.text)
    assert emulator.log_path is not None
    emulator.stop()
    scanner.add("emulator log", emulator.log_path.read_text())
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "--inserts",
            make_url(postgres_db_url).set(drivername="postgresql").render_as_string(hide_password=False),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert b"registry_identities" in dump.stdout and b"registry_audit_events" in dump.stdout
    scanner.add("pg_dump of the DMRV database", dump.stdout)

    assert scanner.hits() == []
    figures.append(
        f"secret-leak scan: {len(scanner.places)} places, {scanner.size:,} bytes scanned for "
        f"{len(scanner.needles)} secret forms: 0 hits"
    )
