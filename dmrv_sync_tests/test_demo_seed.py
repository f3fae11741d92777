"""Demo data: realistic ranges, deterministic, with the listed invalid records really invalid."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from dmrv_sync.db.models import Application, CreditBatch, ProductionRun, ProductionRunStatus
from dmrv_sync.demo.seed import seed_demo_data

TODAY = date(2026, 11, 22)


def test_seed_writes_scale_applications_and_lists_the_invalid_ones(session_factory) -> None:  # type: ignore[no-untyped-def]
    report = seed_demo_data(session_factory, scale=100, seed=7, today=TODAY)
    invalid_ids = {r.entity_id for r in report.invalid}
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Application)) == 100
        runs = session.scalars(select(ProductionRun)).all()
        for run in runs:
            if str(run.id) in invalid_ids:
                continue
            assert run.ended_at is not None and run.started_at is not None
            assert (run.ended_at - run.started_at).days < 30
            assert run.biochar_dry_mass_kg and run.biochar_dry_mass_kg > 0
            assert run.h_corg_molar_ratio is not None and run.h_corg_molar_ratio < 0.5
            assert run.o_corg_molar_ratio is not None and run.o_corg_molar_ratio < 0.2
        for application in session.scalars(select(Application)).all():
            if str(application.id) in invalid_ids:
                continue
            assert application.latitude is not None and -90 <= application.latitude <= 90
            assert application.application_date is not None and application.application_date <= TODAY
            assert application.application_date >= application.production_run.ended_at.date()  # type: ignore[union-attr]
        empty = [b for b in session.scalars(select(CreditBatch)).all() if not b.applications]
        assert {str(b.id) for b in empty} <= invalid_ids
        assert any(r.status != ProductionRunStatus.COMPLETE for r in runs), "some runs are not complete yet"
    assert {r.entity_type for r in report.invalid} == {"production_run", "application", "credit_batch"}
    assert len(report.invalid) == 6


def test_seed_is_deterministic_for_a_seed(session_factory) -> None:  # type: ignore[no-untyped-def]
    first = seed_demo_data(session_factory, scale=10, seed=3, today=TODAY)
    second = seed_demo_data(session_factory, scale=10, seed=3, today=TODAY)
    assert first.counts == second.counts
    with session_factory() as session:
        masses = session.scalars(
            select(ProductionRun.biochar_dry_mass_kg).order_by(ProductionRun.created_at)
        ).all()
    half = len(masses) // 2
    assert sorted(masses[:half]) == sorted(masses[half:])
