"""The bad-input corpus: one bad record per case, seeded beside valid ones, then one `sync pending`.

Each case expects a clear error stored on its own entity that names the field (the text a user reads
in the entity's sync summary), no request for it at the emulator (no audit row for it, no object
carrying its reference), and its valid neighbours synced. Valid-but-unusual input (unicode, emoji) is
expected to sync. Cases that need SQLite's loose typing (a string in a float column, written with raw
SQL) run on SQLite only; the rest on both backends. All cases share one database per backend, so one bad
row that stopped the others would fail every neighbour check.
"""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from dmrv_sync.api import UserError, link_facility
from dmrv_sync.db.migrate import upgrade
from dmrv_sync.db.models import (
    Application,
    ApplicationStatus,
    CreditBatch,
    CreditBatchStatus,
    Facility,
    FeedstockType,
    ProductionRun,
    ProductionRunStatus,
    StorageMethod,
)
from dmrv_sync.db.sync_state import RegistryAuditEvent, RegistryIdentity
from dmrv_sync.emulator import EmulatorConfig, EmulatorServer
from dmrv_sync.emulator.admin_client import EmulatorAdmin
from dmrv_sync.identity import IdentityService
from dmrv_sync.settings import Settings
from dmrv_sync_tests.fixtures.db import create_postgres_database, drop_postgres_database, require_postgres
from dmrv_sync_tests.fixtures.emulator import FACILITY_ID, RunningEmulator
from dmrv_sync_tests.fixtures.sync import SyncWorld

NOW = datetime.now(UTC)
TODAY = NOW.date()


@dataclass
class Base:
    """The valid records a case builds its bad record from (all already in the database)."""

    facility_id: Any
    feedstock_id: Any
    run_id: Any
    run_ended: datetime
    application_id: Any


def _run(base: Base, session: Session, **changes: Any) -> ProductionRun:
    values: dict[str, Any] = {
        "facility_id": base.facility_id,
        "started_at": NOW - timedelta(days=20),
        "ended_at": NOW - timedelta(days=19),
        "biochar_dry_mass_kg": 12_000.0,
        "moisture_percent": 10.0,
        "organic_carbon_fraction": 0.8,
        "h_corg_molar_ratio": 0.3,
        "o_corg_molar_ratio": 0.1,
        "pyrolysis_temperature_c": 600.0,
        "status": ProductionRunStatus.COMPLETE,
    }
    feedstocks = changes.pop("feedstock_types", [session.get(FeedstockType, base.feedstock_id)])
    values.update(changes)
    run = ProductionRun(**values, feedstock_types=feedstocks)
    session.add(run)
    return run


def _application(base: Base, session: Session, **changes: Any) -> Application:
    values: dict[str, Any] = {
        "production_run_id": base.run_id,
        "site_name": "Corpus field",
        "latitude": 49.8,
        "longitude": 18.2,
        "storage_method": StorageMethod.BIOCHAR_FIELD,
        "application_date": base.run_ended.date() + timedelta(days=2),
        "applied_mass_kg": 1_000.0,
        "area_ha": 3.0,
        "truck_mass_on_arrival_kg": 20_000.0,
        "truck_mass_on_departure_kg": 19_000.0,
        "status": ApplicationStatus.APPLIED,
    }
    values.update(changes)
    application = Application(**values)
    session.add(application)
    return application


_period_offset = itertools.count(10, 3)  # distinct period ends (a period end is one statement)


def _batch(base: Base, session: Session, **changes: Any) -> CreditBatch:
    end = TODAY - timedelta(days=next(_period_offset))
    values: dict[str, Any] = {
        "reporting_period_start": end - timedelta(days=60),
        "reporting_period_end": end,
        "status": CreditBatchStatus.PENDING,
        "report_url": "https://reports.example.org/corpus.pdf",
    }
    applications = changes.pop("applications", None)
    values.update(changes)
    batch = CreditBatch(**values, applications=applications or [])
    session.add(batch)
    return batch


def _feedstock(session: Session, **values: Any) -> FeedstockType:
    feedstock = FeedstockType(**values)
    session.add(feedstock)
    return feedstock


@dataclass(frozen=True)
class Case:
    name: str
    entity_type: str
    build: Callable[[Base, Session], Any]  # returns the ORM object (flushed by the caller)
    field: str  # the field the stored message must name; "" for a valid case
    says: str  # what else the message must say ("a|b": either)
    raw_sql: str | None = None  # SQLite only: run after insert, {id} = the entity's id (hex, no dashes)
    sqlite_only: bool = False

    @property
    def valid(self) -> bool:
        return not self.field


def _raw(table: str, column: str, value: str) -> str:
    return f"UPDATE {table} SET {column} = {value} WHERE id = '{{id}}'"


NAN, INF = math.nan, math.inf
CASES = [
    # production runs: missing, zero/negative/non-finite masses, reversed/future dates, ratios over limits
    Case("run-no-start", "production_run", lambda b, s: _run(b, s, started_at=None), "started_at", "is required"),
    Case("run-no-end", "production_run", lambda b, s: _run(b, s, ended_at=None), "ended_at", "is required"),
    Case("run-no-mass", "production_run", lambda b, s: _run(b, s, biochar_dry_mass_kg=None), "biochar_dry_mass_kg", "is required"),
    Case("run-zero-mass", "production_run", lambda b, s: _run(b, s, biochar_dry_mass_kg=0.0), "biochar_dry_mass_kg", "must be > 0"),
    Case("run-negative-mass", "production_run", lambda b, s: _run(b, s, biochar_dry_mass_kg=-5.0), "biochar_dry_mass_kg", "must be > 0"),
    Case("run-nan-mass", "production_run", lambda b, s: _run(b, s, biochar_dry_mass_kg=NAN), "biochar_dry_mass_kg", "finite number|is required"),
    Case("run-inf-mass", "production_run", lambda b, s: _run(b, s, biochar_dry_mass_kg=INF), "biochar_dry_mass_kg", "finite number"),
    Case("run-minus-inf-mass", "production_run", lambda b, s: _run(b, s, biochar_dry_mass_kg=-INF), "biochar_dry_mass_kg", "finite number"),
    Case("run-reversed-dates", "production_run", lambda b, s: _run(b, s, started_at=NOW - timedelta(days=5), ended_at=NOW - timedelta(days=6)), "ended_at", "must be after started_at"),
    Case("run-future-end", "production_run", lambda b, s: _run(b, s, started_at=NOW - timedelta(hours=1), ended_at=NOW + timedelta(days=2)), "ended_at", "is in the future"),
    Case("run-too-long", "production_run", lambda b, s: _run(b, s, started_at=NOW - timedelta(days=60), ended_at=NOW - timedelta(days=10)), "ended_at", "less than 31 days"),
    Case("run-h-corg-over", "production_run", lambda b, s: _run(b, s, h_corg_molar_ratio=0.62), "h_corg_molar_ratio", "must be below 0.5"),
    Case("run-o-corg-over", "production_run", lambda b, s: _run(b, s, o_corg_molar_ratio=0.35), "o_corg_molar_ratio", "must be below 0.2"),
    Case("run-h-corg-null", "production_run", lambda b, s: _run(b, s, h_corg_molar_ratio=None), "h_corg_molar_ratio", "is required"),
    Case("run-h-corg-nan", "production_run", lambda b, s: _run(b, s, h_corg_molar_ratio=NAN), "h_corg_molar_ratio", "finite number|is required"),
    Case("run-no-feedstock", "production_run", lambda b, s: _run(b, s, feedstock_types=[]), "feedstock_types", "at least one feedstock type"),
    Case("run-string-mass", "production_run", lambda b, s: _run(b, s), "biochar_dry_mass_kg", "finite number", _raw("production_runs", "biochar_dry_mass_kg", "'twelve tonnes'"), True),
    Case("run-string-ratio", "production_run", lambda b, s: _run(b, s), "o_corg_molar_ratio", "finite number", _raw("production_runs", "o_corg_molar_ratio", "'low'"), True),
    Case("run-garbage-date", "production_run", lambda b, s: _run(b, s), "ended_at", "", _raw("production_runs", "ended_at", "'last tuesday'"), True),
    # applications: coordinates, masses, dates, strings
    Case("app-latitude-out", "application", lambda b, s: _application(b, s, latitude=123.4), "latitude", "within -90..90"),
    Case("app-longitude-out", "application", lambda b, s: _application(b, s, longitude=-200.0), "longitude", "within -180..180"),
    Case("app-latitude-nan", "application", lambda b, s: _application(b, s, latitude=NAN), "latitude", "finite number|is required"),
    Case("app-longitude-inf", "application", lambda b, s: _application(b, s, longitude=INF), "longitude", "finite number"),
    Case("app-no-latitude", "application", lambda b, s: _application(b, s, latitude=None), "latitude", "is required"),
    Case("app-zero-mass", "application", lambda b, s: _application(b, s, applied_mass_kg=0.0), "applied_mass_kg", "must be > 0"),
    Case("app-negative-mass", "application", lambda b, s: _application(b, s, applied_mass_kg=-1.0), "applied_mass_kg", "must be > 0"),
    Case("app-inf-mass", "application", lambda b, s: _application(b, s, applied_mass_kg=INF), "applied_mass_kg", "finite number"),
    Case("app-nan-area", "application", lambda b, s: _application(b, s, area_ha=NAN), "area_ha", "finite number|is required"),
    Case("app-no-area", "application", lambda b, s: _application(b, s, area_ha=None), "area_ha", "is required"),
    Case("app-future-date", "application", lambda b, s: _application(b, s, application_date=TODAY + timedelta(days=30)), "application_date", "is in the future"),
    Case("app-before-run", "application", lambda b, s: _application(b, s, application_date=b.run_ended.date() - timedelta(days=3)), "application_date", "is before its production run"),
    Case("app-truck-gains", "application", lambda b, s: _application(b, s, truck_mass_on_departure_kg=21_000.0), "truck_mass_on_departure_kg", "must be below the mass on arrival"),
    Case("app-no-site", "application", lambda b, s: _application(b, s, site_name=None), "site_name", "is required"),
    Case("app-blank-site", "application", lambda b, s: _application(b, s, site_name="   "), "site_name", "is required"),
    Case("app-no-storage", "application", lambda b, s: _application(b, s, storage_method=None), "storage_method", "is required"),
    Case("app-10k-site", "application", lambda b, s: _application(b, s, site_name="x" * 10_000), "site_name", "10000 characters long; at most 100", sqlite_only=True),
    Case("app-string-mass", "application", lambda b, s: _application(b, s), "applied_mass_kg", "finite number", _raw("applications", "applied_mass_kg", "'a lot'"), True),
    Case("app-garbage-date", "application", lambda b, s: _application(b, s), "application_date", "", _raw("applications", "application_date", "'someday'"), True),
    Case("app-unknown-storage", "application", lambda b, s: _application(b, s), "storage_method", "", _raw("applications", "storage_method", "'ocean_dump'"), True),
    Case("app-orphan-run", "application", lambda b, s: _application(b, s), "production_run", "not in", _raw("applications", "production_run_id", "'00000000000000000000000000000bad'"), True),
    Case("app-unicode-site", "application", lambda b, s: _application(b, s, site_name="Pole u Žďáru 🌱 — 北の畑 ✓"), "", ""),
    # credit batches
    Case("batch-no-applications", "credit_batch", lambda b, s: _batch(b, s), "applications", "at least one applied application"),
    Case("batch-reversed-period", "credit_batch", lambda b, s: _batch(b, s, reporting_period_start=TODAY - timedelta(days=5), applications=[s.get(Application, b.application_id)]), "reporting_period_end", "must not be before reporting_period_start"),
    Case("batch-future-end", "credit_batch", lambda b, s: _batch(b, s, reporting_period_end=TODAY + timedelta(days=40), applications=[s.get(Application, b.application_id)]), "reporting_period_end", "is in the future"),
    Case("batch-no-end", "credit_batch", lambda b, s: _batch(b, s, reporting_period_end=None, applications=[s.get(Application, b.application_id)]), "reporting_period_end", "is required"),
    Case("batch-no-report", "credit_batch", lambda b, s: _batch(b, s, report_url=None, applications=[s.get(Application, b.application_id)]), "report_url", "is required"),
    Case("batch-ftp-report", "credit_batch", lambda b, s: _batch(b, s, report_url="ftp://reports/x.pdf", applications=[s.get(Application, b.application_id)]), "report_url", "must be an http(s) URL"),
    Case("batch-string-tco2e", "credit_batch", lambda b, s: _batch(b, s, applications=[s.get(Application, b.application_id)]), "estimated_tco2e", "", _raw("credit_batches", "estimated_tco2e", "'plenty'"), True),
    # feedstock types and facilities
    Case("feedstock-blank-name", "feedstock_type", lambda b, s: _feedstock(s, name="  "), "name", "is required"),
]  # fmt: skip
CASE_IDS = [case.name for case in CASES]


@dataclass
class CorpusRun:
    backend: str
    world: SyncWorld
    ids: dict[str, str]  # case name -> entity id
    neighbours: dict[str, list[str]]  # entity type -> valid seeded ids
    summaries: dict[str, dict[str, Any]]
    audited: set[tuple[str, str]]  # (entity_type, entity_id) with an HTTP request in the audit table
    references: set[str]  # supplier_reference_ids of every object in the emulator


def _build_corpus(world: SyncWorld, backend: str) -> dict[str, str]:
    ids: dict[str, str] = {}
    with world.sessions.begin() as session:
        run = session.scalars(
            select(ProductionRun).where(ProductionRun.status == ProductionRunStatus.COMPLETE)
        ).first()
        assert run is not None and run.ended_at is not None
        application = session.scalars(
            select(Application).where(
                Application.production_run_id == run.id, Application.status == ApplicationStatus.APPLIED
            )
        ).first()
        assert application is not None
        base = Base(run.facility_id, run.feedstock_types[0].id, run.id, run.ended_at, application.id)
        raw: list[tuple[Case, str]] = []
        for case in CASES:
            if case.sqlite_only and backend != "sqlite":
                continue
            entity = case.build(base, session)
            session.flush()
            ids[case.name] = str(entity.id)
            if case.raw_sql:
                raw.append((case, entity.id.hex))
    if raw:  # SQLite's loose typing: values SQLAlchemy itself would never write
        connection = sqlite3.connect(make_url(world.db_url).database)
        connection.execute("PRAGMA foreign_keys=OFF")
        for case, hex_id in raw:
            assert case.raw_sql is not None
            connection.execute(case.raw_sql.format(id=hex_id))
        connection.commit()
        connection.close()
    return ids


def _corpus_run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    url = (
        f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'dmrv.sqlite3'}"
        if backend == "sqlite"
        else create_postgres_database()
    )
    server = EmulatorServer(EmulatorConfig(), port=0)
    server.start()
    emulator = RunningEmulator(base_url=server.base_url, admin=EmulatorAdmin(server.admin_url), server=server)
    try:
        upgrade(url)
        settings = Settings(dmrv_database_url=url, isometric_base_url=server.base_url, sync_lease_seconds=60)
        world = SyncWorld(url, emulator, settings)
        world.seed(scale=8, with_invalid=False, seed=7)
        world.link()
        ids = _build_corpus(world, backend)
        bad = set(ids.values())
        with world.sessions() as session:
            neighbours = {
                entity_type: [str(i) for i in session.scalars(select(model.id)) if str(i) not in bad]
                for entity_type, model in (
                    ("production_run", ProductionRun),
                    ("application", Application),
                    ("credit_batch", CreditBatch),
                )
            }
        with world.engine() as engine:
            engine.sync_all("pending")
        identities = IdentityService(world.sessions)
        summaries = {
            name: identities.get_entity_sync_summary(
                next(c.entity_type for c in CASES if c.name == name), entity_id
            ).get("isometric", {})
            for name, entity_id in ids.items()
        }
        with world.sessions() as session:
            audited = {
                (str(t), str(i))
                for t, i in session.execute(
                    select(RegistryAuditEvent.entity_type, RegistryAuditEvent.entity_id).where(
                        RegistryAuditEvent.http_method.is_not(None)
                    )
                )
            }
        references = {
            str(record.get("supplier_reference_id"))
            for resource in server.store.counts()
            for record in server.store.list(resource)
        }
        yield CorpusRun(backend, world, ids, neighbours, summaries, audited, references)
    finally:
        emulator.stop()
        if backend == "postgres":
            drop_postgres_database(url)


# One database per backend, built once for all its cases (module scope): one bad row that stopped the
# others would fail every neighbour check.
@pytest.fixture(scope="module")
def sqlite_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    yield from _corpus_run("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def postgres_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    require_postgres()
    yield from _corpus_run("postgres", tmp_path_factory)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_record_gets_its_own_error_and_sends_nothing_on_sqlite(
    sqlite_corpus: CorpusRun, case: Case
) -> None:
    _check_case(sqlite_corpus, case)


# PostgreSQL types its columns: the cases of text in a float column and the like cannot be stored there.
@pytest.mark.postgres
@pytest.mark.parametrize("case", [c for c in CASES if not c.sqlite_only], ids=lambda c: c.name)
def test_bad_record_gets_its_own_error_and_sends_nothing_on_postgres(
    postgres_corpus: CorpusRun, case: Case
) -> None:
    _check_case(postgres_corpus, case)


def _check_case(corpus: CorpusRun, case: Case) -> None:
    assert case.name in corpus.ids
    entity_id = corpus.ids[case.name]
    steps = corpus.summaries[case.name]
    if case.valid:
        assert steps and all(s["status"] == "synced" for s in steps.values()), steps
        return
    errors = [s["error"] for s in steps.values() if s["status"] == "error" and s["error"]]
    assert errors, f"{case.name}: no error stored on {case.entity_type} {entity_id}: {steps}"
    message = errors[0]
    # NaN: SQLite stores it as NULL, so there the record reads as missing the value.
    assert entity_id in message and case.field in message, message
    assert any(says in message for says in case.says.split("|")), message
    # Nothing sent for it: no HTTP attempt audited against it, no object in the emulator carrying it.
    assert (case.entity_type, entity_id) not in corpus.audited
    assert not any(entity_id in reference for reference in corpus.references)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_neighbours_of_bad_records_sync(
    backend: str, request: pytest.FixtureRequest, figures: list[str]
) -> None:
    """The valid seeded records that are ready to sync all reach the registry."""
    corpus: CorpusRun = request.getfixturevalue(f"{backend}_corpus")
    identities = IdentityService(corpus.world.sessions)
    models = {"production_run": ProductionRun, "application": Application, "credit_batch": CreditBatch}
    not_synced = []
    total = 0
    for entity_type, entity_ids in corpus.neighbours.items():
        with corpus.world.sessions() as session:
            ready = [i for i in entity_ids if _ready(session.get(models[entity_type], uuid.UUID(i)))]
        for entity_id in ready:
            total += 1
            steps = identities.get_entity_sync_summary(entity_type, entity_id).get("isometric", {})
            if not steps or any(s["status"] != "synced" for s in steps.values()):
                not_synced.append((entity_type, entity_id, steps))
    assert total >= 5
    assert not not_synced, not_synced
    figures.append(
        f"bad-input corpus ({corpus.backend}): {len(corpus.ids)} bad/odd records beside {total} valid ones "
        "synced in one run"
    )


def _ready(entity: Any) -> bool:
    status = getattr(entity, "status", None)
    return status in (ProductionRunStatus.COMPLETE, ApplicationStatus.APPLIED, CreditBatchStatus.PENDING)


# --- facilities: linked by hand, so their bad input is an external ID ----------------------------------


def _facilities(world: SyncWorld) -> list[str]:
    with world.sessions() as session:
        return [str(i) for i in session.scalars(select(Facility.id).order_by(Facility.name))]


def test_link_facility_with_an_id_of_the_wrong_prefix_is_refused_by_the_cli(
    world: SyncWorld, tmp_path: Any
) -> None:
    world.seed(scale=8, with_invalid=False)
    facility_id = _facilities(world)[0]
    result = subprocess.run(
        [sys.executable, "-m", "dmrv_sync.cli", "link", "facility", facility_id, "prj_1DEMOPROJECT0001"],
        env={**os.environ, "DMRV_DATABASE_URL": world.db_url, "ISOMETRIC_BASE_URL": world.emulator.base_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "'prj_1DEMOPROJECT0001' is not an Isometric facility ID" in result.stderr
    assert world.identities(entity_type="facility", external_id="prj_1DEMOPROJECT0001") == []
    assert world.stats()["requests"]["total"] == 0


def test_a_facility_linked_twice_is_refused(world: SyncWorld) -> None:
    """Two local facilities cannot be the same Certify facility: their batches would mix."""
    world.seed(scale=80, with_invalid=False)
    first, second = _facilities(world)[:2]
    link_facility(first, FACILITY_ID, settings=world.settings)
    with pytest.raises(UserError, match=f"{FACILITY_ID} is already linked to facility {first}"):
        link_facility(second, FACILITY_ID, settings=world.settings)
    assert [i.entity_id for i in world.identities(entity_type="facility", external_id=FACILITY_ID)] == [first]


def test_a_stored_facility_id_of_the_wrong_prefix_blocks_its_runs_without_a_request(world: SyncWorld) -> None:
    world.seed(scale=80, with_invalid=False)
    world.link()
    bad, good = _facilities(world)[:2]
    with world.sessions.begin() as session:  # e.g. an ID pasted by hand into the sidecar table
        session.execute(
            update(RegistryIdentity)
            .where(RegistryIdentity.entity_type == "facility", RegistryIdentity.entity_id == bad)
            .values(external_id="prj_1DEMOPROJECT0001")
        )
        runs = {
            str(r.id): str(r.facility_id)
            for r in session.scalars(
                select(ProductionRun).where(ProductionRun.status == ProductionRunStatus.COMPLETE)
            )
        }
    with world.engine() as engine:
        engine.sync_all("pending")
    identities = IdentityService(world.sessions)
    for run_id, facility_id in runs.items():
        step = identities.get_entity_sync_summary("production_run", run_id)["isometric"]["production_batch"]
        if facility_id == good:
            assert step["status"] == "synced", step
            continue
        assert step["status"] == "error", step
        assert "facility_id" in step["error"] and "prj_1DEMOPROJECT0001" in step["error"], step["error"]
        assert "dmrv-sync link facility" in step["error"]
    creates = world.stats()["requests"]["creates_succeeded"].get("production_batches", 0)
    assert creates == sum(1 for f in runs.values() if f == good)
    assert world.stats()["requests"]["by_status"].get("422", 0) == 0
