"""Isometric's validation rules for each local entity, checked before any request.

Each rule yields an Issue naming the entity, the field, the value and the rule. Errors block the entity;
warnings are recorded and let it through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import object_session

from dmrv_sync.db.models import (
    Application,
    ApplicationStatus,
    CreditBatch,
    Facility,
    FeedstockType,
    ProductionRun,
)
from dmrv_sync.settings import Settings
from dmrv_sync.sync.adapter import Issue, Severity, is_number


@dataclass(frozen=True)
class Limits:
    max_h_corg: float = 0.5
    max_o_corg: float = 0.2
    max_production_days: float = 31

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.validation_max_h_corg_ratio,
            settings.validation_max_o_corg_ratio,
            settings.validation_max_production_days,
        )


class _Checker:
    def __init__(self, entity_type: str, entity: Any) -> None:
        self.entity_type = entity_type
        self.entity_id = str(entity.id)
        self.entity = entity
        self.issues: list[Issue] = []

    def add(self, field: str, value: Any, rule: str, severity: Severity = Severity.ERROR) -> None:
        self.issues.append(Issue(severity, self.entity_type, self.entity_id, field, value, rule))

    def required(self, *fields: str) -> None:
        for name in fields:
            value = getattr(self.entity, name)
            if value is None or (isinstance(value, str) and not value.strip()):
                self.add(name, value, "is required")

    def positive(self, *fields: str) -> None:
        for name in fields:
            value = getattr(self.entity, name)
            if value is None:
                continue
            if not is_number(value):
                self.add(name, value, "must be a finite number")
            elif value <= 0:
                self.add(name, value, "must be > 0")

    def within(self, name: str, low: float, high: float, severity: Severity = Severity.ERROR) -> None:
        value = getattr(self.entity, name)
        if value is None:
            return
        if not is_number(value):
            self.add(name, value, "must be a finite number", severity)
        elif not low <= value <= high:
            self.add(name, value, f"must be within {low:g}..{high:g}", severity)

    def below(self, name: str, limit: float, what: str) -> None:
        value = getattr(self.entity, name)
        if value is None:
            self.add(name, value, f"is required ({what} must be below {limit:g})")
        elif not is_number(value):
            self.add(name, value, "must be a finite number")
        elif value >= limit:
            self.add(name, value, f"{what} must be below {limit:g} (VALIDATION_MAX_* setting)")

    def max_length(self, name: str, limit: int) -> None:
        value = getattr(self.entity, name)
        if isinstance(value, str) and len(value) > limit:
            self.add(name, value, f"is {len(value)} characters long; at most {limit}")


def validate(entity_type: str, entity: Any, now: datetime, limits: Limits) -> list[Issue]:
    check = _Checker(entity_type, entity)
    _RULES[entity_type](check, entity, now, limits)
    return check.issues


def _facility(check: _Checker, facility: Facility, now: datetime, limits: Limits) -> None:
    check.required("name")
    check.within("latitude", -90, 90, Severity.WARNING)
    check.within("longitude", -180, 180, Severity.WARNING)
    if facility.country is not None and (len(facility.country) != 3 or not facility.country.isalpha()):
        check.add("country", facility.country, "must be an ISO 3166-1 alpha-3 code", Severity.WARNING)


def _feedstock_type(check: _Checker, feedstock: FeedstockType, now: datetime, limits: Limits) -> None:
    check.required("name")


def _production_run(check: _Checker, run: ProductionRun, now: datetime, limits: Limits) -> None:
    check.required("started_at", "ended_at", "biochar_dry_mass_kg", "facility_id")
    check.positive("biochar_dry_mass_kg")
    if not run.feedstock_types:
        check.add("feedstock_types", [], "at least one feedstock type is required")
    if isinstance(run.started_at, datetime) and isinstance(run.ended_at, datetime):
        if run.ended_at <= run.started_at:
            check.add(
                "ended_at", run.ended_at.isoformat(), f"must be after started_at {run.started_at.isoformat()}"
            )
        elif (run.ended_at - run.started_at).total_seconds() > limits.max_production_days * 86400:
            days = (run.ended_at - run.started_at).total_seconds() / 86400
            check.add(
                "ended_at",
                run.ended_at.isoformat(),
                f"a production batch must span less than {limits.max_production_days:g} days (this one: {days:.1f})",
            )
        if run.ended_at > now:
            check.add("ended_at", run.ended_at.isoformat(), "is in the future")
    check.below("h_corg_molar_ratio", limits.max_h_corg, "H/Corg molar ratio")
    check.below("o_corg_molar_ratio", limits.max_o_corg, "O/Corg molar ratio")
    check.within("moisture_percent", 0, 100, Severity.WARNING)
    check.within("organic_carbon_fraction", 0, 1, Severity.WARNING)
    if run.pyrolysis_temperature_c is None:
        check.add("pyrolysis_temperature_c", None, "is not recorded", Severity.WARNING)


def _application(check: _Checker, application: Application, now: datetime, limits: Limits) -> None:
    check.required(
        "site_name",
        "latitude",
        "longitude",
        "storage_method",
        "application_date",
        "applied_mass_kg",
        "area_ha",
        "truck_mass_on_arrival_kg",
        "truck_mass_on_departure_kg",
    )
    check.max_length("site_name", 100)
    check.within("latitude", -90, 90)
    check.within("longitude", -180, 180)
    check.positive("applied_mass_kg", "area_ha", "truck_mass_on_arrival_kg", "truck_mass_on_departure_kg")
    arrival, departure = application.truck_mass_on_arrival_kg, application.truck_mass_on_departure_kg
    if is_number(arrival) and is_number(departure) and departure >= arrival:  # type: ignore[operator]
        check.add(
            "truck_mass_on_departure_kg",
            departure,
            f"must be below the mass on arrival ({arrival} kg): the truck unloads",
        )
    applied_on = application.application_date
    if applied_on is not None:
        if applied_on > now.date():
            check.add("application_date", applied_on.isoformat(), "is in the future")
        run = application.production_run
        if run is not None and isinstance(run.ended_at, datetime) and applied_on < run.ended_at.date():
            check.add(
                "application_date",
                applied_on.isoformat(),
                f"is before its production run {run.id} ended ({run.ended_at.date().isoformat()})",
            )


def _credit_batch(check: _Checker, batch: CreditBatch, now: datetime, limits: Limits) -> None:
    check.required("reporting_period_start", "reporting_period_end", "report_url")
    start, end = batch.reporting_period_start, batch.reporting_period_end
    if start is not None and end is not None and end < start:
        check.add(
            "reporting_period_end",
            end.isoformat(),
            f"must not be before reporting_period_start {start.isoformat()}",
        )
    if end is not None and end > now.date():
        check.add("reporting_period_end", end.isoformat(), "is in the future")
    session = object_session(batch)
    if session is not None and end is not None:
        # Isometric keeps one GHG statement per project and period end: two batches cannot share one.
        earlier = session.scalars(
            select(CreditBatch.id)
            .where(CreditBatch.reporting_period_end == end, CreditBatch.id != batch.id)
            .where(
                or_(
                    CreditBatch.created_at < batch.created_at,
                    and_(CreditBatch.created_at == batch.created_at, CreditBatch.id < batch.id),
                )
            )
            .limit(1)
        ).first()
        if earlier is not None:
            check.add(
                "reporting_period_end",
                end.isoformat(),
                f"credit batch {earlier} already ends on that day; Isometric files one GHG statement per period "
                "end, so merge the two batches or move this one's period",
            )
    url = batch.report_url
    if url and not url.startswith(("https://", "http://")):
        check.add("report_url", url, "must be an http(s) URL the verifier can open")
    applied = [a for a in batch.applications if a.status == ApplicationStatus.APPLIED]
    if not applied:
        check.add(
            "applications", len(batch.applications), "a credit batch needs at least one applied application"
        )
    # The GHG entry's monitored inputs come from the applied applications' production runs.
    runs_without_carbon = sorted(
        {
            str(a.production_run_id)
            for a in applied
            if a.production_run is None or not is_number(a.production_run.organic_carbon_fraction)
        }
    )
    if runs_without_carbon:
        check.add(
            "applications",
            runs_without_carbon,
            "the production runs of its applied applications need an organic_carbon_fraction (the GHG "
            f"entry's organic carbon input); missing on production run {', '.join(runs_without_carbon)}",
        )
    for application in batch.applications:
        if application.status != ApplicationStatus.APPLIED:
            check.add("applications", str(application.id), "is not applied yet", Severity.WARNING)
        elif (
            start is not None
            and end is not None
            and application.application_date is not None
            and not start <= application.application_date <= end
        ):
            check.add(
                "applications",
                str(application.id),
                f"applied on {application.application_date.isoformat()}, outside the reporting period",
                Severity.WARNING,
            )


_RULES: dict[str, Callable[[_Checker, Any, datetime, Limits], None]] = {
    "facility": _facility,
    "feedstock_type": _feedstock_type,
    "production_run": _production_run,
    "application": _application,
    "credit_batch": _credit_batch,
}
