"""`dmrv-sync demo seed --scale N`: N field applications with the facilities, feedstock types,
production runs and credit batches around them.

Values follow the ranges in Isometric's biochar protocol (shared/isometric/README.md): H/Corg < 0.5,
O/Corg < 0.2, a production run shorter than a month, applications after their batch ended and not in
the future. A handful of records break one rule each, on purpose, and are listed, so the validation
paths show up in the demo.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

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

FACILITY_SITES = [
    ("Ostrava Pyrolysis Works", "CZE", 49.82, 18.26),
    ("Tarragona Biochar Plant", "ESP", 41.12, 1.24),
    ("Mato Grosso Carbon Farm", "BRA", -12.64, -55.42),
    ("Kisumu Char Co-op", "KEN", -0.09, 34.77),
    ("Iowa Prairie Biochar", "USA", 41.88, -93.10),
]
FEEDSTOCKS = [
    ("Forestry residues", "woody biomass"),
    ("Rice husk", "agricultural residue"),
    ("Nut shells", "agricultural residue"),
    ("Corn stover", "agricultural residue"),
]
APPLICATIONS_PER_RUN = 4
APPLICATIONS_PER_CREDIT_BATCH = 25


@dataclass
class InvalidRecord:
    entity_type: str
    entity_id: str
    problem: str


@dataclass
class SeedReport:
    counts: dict[str, int] = field(default_factory=dict)
    invalid: list[InvalidRecord] = field(default_factory=list)


def seed_demo_data(
    session_factory: sessionmaker[Session],
    *,
    scale: int,
    seed: int = 42,
    today: date | None = None,
    with_invalid: bool = True,
) -> SeedReport:
    if scale < 1:
        raise ValueError(f"--scale must be at least 1 (got {scale})")
    rng = random.Random(seed)
    today = today or datetime.now(UTC).date()
    report = SeedReport()

    facilities = [
        Facility(name=name, country=country, latitude=lat, longitude=lon)
        for name, country, lat, lon in FACILITY_SITES[: min(len(FACILITY_SITES), max(2, scale // 40))]
    ]
    feedstocks = [FeedstockType(name=name, category=category) for name, category in FEEDSTOCKS]
    runs: list[ProductionRun] = []
    applications: list[Application] = []

    for run_index in range(math.ceil(scale / APPLICATIONS_PER_RUN)):
        facility = facilities[run_index % len(facilities)]
        started = datetime.combine(today, datetime.min.time(), UTC) - timedelta(
            days=rng.randint(30, 200), hours=rng.randint(0, 23)
        )
        ended = started + timedelta(hours=rng.randint(8, 72))
        mass = round(rng.uniform(8_000, 40_000), 1)
        run = ProductionRun(
            facility=facility,
            feedstock_types=rng.sample(feedstocks, k=rng.choice([1, 1, 2])),
            started_at=started,
            ended_at=ended,
            biochar_dry_mass_kg=mass,
            moisture_percent=round(rng.uniform(5, 25), 1),
            organic_carbon_fraction=round(rng.uniform(0.6, 0.9), 3),
            h_corg_molar_ratio=round(rng.uniform(0.1, 0.45), 3),
            o_corg_molar_ratio=round(rng.uniform(0.02, 0.15), 3),
            pyrolysis_temperature_c=round(rng.uniform(500, 750)),
            status=ProductionRunStatus.COMPLETE,
        )
        runs.append(run)
        for _ in range(APPLICATIONS_PER_RUN):
            if len(applications) == scale:
                break
            applied = round(rng.uniform(0.05, 0.2) * mass, 1)
            arrival = round(rng.uniform(15_000, 30_000) + applied, 1)
            applications.append(
                Application(
                    production_run=run,
                    site_name=f"{facility.name.split()[0]} field {len(applications) + 1}",
                    latitude=round((facility.latitude or 0) + rng.uniform(-0.4, 0.4), 5),
                    longitude=round((facility.longitude or 0) + rng.uniform(-0.4, 0.4), 5),
                    storage_method=StorageMethod.BIOCHAR_FIELD,
                    application_date=min(today, ended.date() + timedelta(days=rng.randint(1, 25))),
                    applied_mass_kg=applied,
                    area_ha=round(rng.uniform(1, 20), 2),
                    truck_mass_on_arrival_kg=arrival,
                    truck_mass_on_departure_kg=round(arrival - applied, 1),
                    status=ApplicationStatus.APPLIED,
                )
            )

    # A few runs and applications still in progress: they must not be synced yet.
    in_progress = set(map(id, runs[1::17]))
    for run in runs[1::17]:
        run.status = ProductionRunStatus.IN_PROGRESS
    for index, application in enumerate(applications):
        # Biochar from a run still in progress cannot have been applied yet.
        if index % 23 == 2 or id(application.production_run) in in_progress:
            application.status = ApplicationStatus.PLANNED

    # Consecutive reporting periods with distinct end dates (Isometric files one statement per period end).
    credit_batches: list[CreditBatch] = []
    by_date = sorted(applications, key=lambda a: a.application_date or today)
    group: list[Application] = []
    for index, application in enumerate(by_date):
        group.append(application)
        next_date = by_date[index + 1].application_date if index + 1 < len(by_date) else None
        if len(group) >= APPLICATIONS_PER_CREDIT_BATCH and next_date != application.application_date:
            credit_batches.append(_credit_batch(group, credit_batches))
            group = []
    if group:
        credit_batches.append(_credit_batch(group, credit_batches))

    broken = _break_some(today, runs, applications, credit_batches) if with_invalid else []

    with session_factory.begin() as session:
        session.add_all([*facilities, *feedstocks, *runs, *applications, *credit_batches])
        session.flush()
        report.invalid = [InvalidRecord(kind, str(entity.id), problem) for kind, entity, problem in broken]
    report.counts = {
        "facility": len(facilities),
        "feedstock_type": len(feedstocks),
        "production_run": len(runs),
        "application": len(applications),
        "credit_batch": len(credit_batches),
    }
    return report


def _credit_batch(group: list[Application], earlier: list[CreditBatch]) -> CreditBatch:
    period_end = max(a.application_date for a in group if a.application_date)
    previous_end = earlier[-1].reporting_period_end if earlier else None
    period_start = previous_end + timedelta(days=1) if previous_end else period_end - timedelta(days=90)
    return CreditBatch(
        reporting_period_start=min(
            period_start, min(a.application_date for a in group if a.application_date)
        ),
        reporting_period_end=period_end,
        status=CreditBatchStatus.PENDING,
        report_url=f"https://reports.example.org/ghg/{period_end.isoformat()}-{len(earlier) + 1}.pdf",
        estimated_tco2e=Decimal(str(round(sum(a.applied_mass_kg or 0 for a in group) * 0.0025, 4))),
        applications=list(group),
    )


def _break_some(
    today: date,
    runs: list[ProductionRun],
    applications: list[Application],
    credit_batches: list[CreditBatch],
) -> list[tuple[str, ProductionRun | Application | CreditBatch, str]]:
    """Make one rule fail on a few records; returns (entity type, entity, what is wrong)."""
    broken: list[tuple[str, ProductionRun | Application | CreditBatch, str]] = []
    complete_runs = [r for r in runs if r.status == ProductionRunStatus.COMPLETE]
    if len(complete_runs) >= 4:
        run = complete_runs[-1]
        run.h_corg_molar_ratio = 0.62
        broken.append(("production_run", run, "H/Corg molar ratio 0.62 is not below the limit 0.5"))
        run = complete_runs[-2]
        run.biochar_dry_mass_kg = 0.0
        broken.append(("production_run", run, "biochar dry mass 0 kg: masses must be > 0"))
    applied = [a for a in applications if a.status == ApplicationStatus.APPLIED]
    if len(applied) >= 10:
        application = applied[-1]
        application.latitude = 123.4
        broken.append(("application", application, "latitude 123.4 is outside -90..90"))
        application = applied[-2]
        application.application_date = today + timedelta(days=30)
        broken.append(("application", application, "application date is in the future"))
        application = applied[-3]
        run_end = application.production_run.ended_at
        if run_end is not None:
            application.application_date = run_end.date() - timedelta(days=3)
            broken.append(("application", application, "application date is before its production run ended"))
    if credit_batches:
        empty = CreditBatch(
            reporting_period_start=today - timedelta(days=120),
            reporting_period_end=today - timedelta(days=30),
            status=CreditBatchStatus.PENDING,
            report_url="https://reports.example.org/ghg/empty.pdf",
            applications=[],
        )
        credit_batches.append(empty)
        broken.append(("credit_batch", empty, "credit batch has no applications"))
    return broken
