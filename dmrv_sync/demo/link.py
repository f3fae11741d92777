"""`dmrv-sync demo link`: what a user does by hand in the registry's web app, done against the local
emulator so the demo needs no manual step: link every facility to one the emulator provisioned, and
create each feedstock type there with the supplier reference ID dmrv-sync looks it up by."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from dmrv_sync.api import link_facility
from dmrv_sync.db.models import Facility, FeedstockType
from dmrv_sync.db.session import get_session_factory
from dmrv_sync.registries.isometric.client import is_loopback_url
from dmrv_sync.settings import Settings
from dmrv_sync.sync.adapter import supplier_reference


def emulator_root(settings: Settings) -> str:
    url = settings.isometric_url
    if not is_loopback_url(url):
        raise RuntimeError(
            f"demo link only works against the local emulator, and ISOMETRIC_BASE_URL / ISOMETRIC_ENVIRONMENT "
            f"point at {urlsplit(url).netloc}: link real facilities with `dmrv-sync link facility`"
        )
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def link_demo(settings: Settings) -> list[str]:
    root = emulator_root(settings)
    with httpx.Client(base_url=root, timeout=10) as http:
        provisioned = http.get("/_emulator/provisioned").raise_for_status().json()
        facilities = [f["id"] for f in provisioned["facilities"]]
        known_references = {f.get("supplier_reference_id") for f in provisioned["feedstock_types"]}
        sessions = get_session_factory(settings.database_url)
        with sessions() as session:
            local_facilities = session.scalars(
                select(Facility).order_by(Facility.created_at, Facility.id)
            ).all()
            feedstocks = session.scalars(select(FeedstockType).order_by(FeedstockType.created_at)).all()
        if not facilities:
            raise RuntimeError("the emulator provisioned no facilities: nothing to link to")
        done = []
        for index, facility in enumerate(local_facilities):
            done.append(
                link_facility(str(facility.id), facilities[index % len(facilities)], settings=settings)
            )
        for feedstock in feedstocks:
            reference = supplier_reference("feedstock_type", str(feedstock.id))
            if reference in known_references:
                continue
            http.post(
                "/_emulator/feedstock_types",
                json={"name": feedstock.name, "supplier_reference_id": reference},
            ).raise_for_status()
            done.append(f"feedstock type {feedstock.name!r} created in the emulator as {reference}")
        return done
