"""Admin routes under /_emulator: what a person does in the registry's web app, and test controls.

No authentication and never faulted. Routes:
    GET  /_emulator/health                      {"status": "ok"}
    GET  /_emulator/provisioned                 projects, facilities, feedstock types, GHG entry templates
    POST /_emulator/feedstock_types             {name, supplier_reference_id, id?} -> FeedstockType
    GET  /_emulator/faults                      the FaultConfig
    POST /_emulator/faults                      FaultConfig (replaces it) -> the FaultConfig
    GET  /_emulator/stats                       objects, duplicates, request counters
    POST /_emulator/reset                       forget created objects and counters, keep provisioning
    POST /_emulator/ghg_statements/{id}/status  {status, verifier?} -> GhgStatement
"""

from __future__ import annotations

from typing import Any

from dmrv_sync.emulator.app import Request, Response, Route, Router, answer
from dmrv_sync.emulator.config import ProvisionedFeedstockType, Provisioning
from dmrv_sync.emulator.errors import not_found
from dmrv_sync.emulator.faults import FaultConfig, FaultInjector
from dmrv_sync.emulator.lifecycle import StatementVerdict, apply_verdict
from dmrv_sync.emulator.schemas import FeedstockType, GhgStatement
from dmrv_sync.emulator.stats import RequestCounters
from dmrv_sync.emulator.store import Store

ADMIN_PREFIX = "/_emulator"


class AdminApi:
    def __init__(
        self, store: Store, provisioning: Provisioning, faults: FaultInjector, counters: RequestCounters
    ) -> None:
        self.store = store
        self.provisioning = provisioning
        self.faults = faults
        self.counters = counters
        self.router = Router(
            [
                Route("GET", "/health", lambda _: Response(200, {"status": "ok"})),
                Route("GET", "/provisioned", self.provisioned),
                Route("POST", "/feedstock_types", self.provision_feedstock_type),
                Route("GET", "/faults", self.get_faults),
                Route("POST", "/faults", self.set_faults),
                Route("GET", "/stats", self.stats),
                Route("POST", "/reset", self.reset),
                Route("POST", "/ghg_statements/{id}/status", self.set_statement_status),
            ]
        )

    def provision_feedstock_type(self, request: Request) -> Response:
        return answer(
            FeedstockType, provision_feedstock_type(self.store, request.body_model(ProvisionedFeedstockType))
        )

    def provisioned(self, _: Request) -> Response:
        body = self.provisioning.model_dump(mode="json", exclude={"feedstock_types"})
        body["feedstock_types"] = [
            FeedstockType.model_validate(r).model_dump(mode="json")
            for r in self.store.list("feedstock_types")
        ]
        return Response(200, body)

    def get_faults(self, _: Request) -> Response:
        return Response(200, self.faults.config.model_dump(mode="json"))

    def set_faults(self, request: Request) -> Response:
        self.faults.configure(request.body_model(FaultConfig))
        return Response(200, self.faults.config.model_dump(mode="json"))

    def stats(self, _: Request) -> Response:
        return Response(200, stats(self.store, self.counters))

    def reset(self, _: Request) -> Response:
        self.store.clear_created()
        self.counters.reset()
        self.faults.restart()
        return Response(200, {"status": "reset"})

    def set_statement_status(self, request: Request) -> Response:
        verdict = request.body_model(StatementVerdict)
        statement_id = request.path_params["id"]
        if self.store.get("ghg_statements", statement_id) is None:
            raise not_found(f"GHG statement {statement_id} not found")
        return answer(GhgStatement, apply_verdict(self.store, statement_id, verdict))


def provision_feedstock_type(store: Store, feedstock_type: ProvisionedFeedstockType) -> dict[str, Any]:
    """Create a feedstock type as the web app would; an already present id is left as it is."""
    with store.lock:
        if feedstock_type.id is not None:
            existing = store.get("feedstock_types", feedstock_type.id)
            if existing is not None:
                return existing
        record = {"name": feedstock_type.name, "supplier_reference_id": feedstock_type.supplier_reference_id}
        return store.insert("feedstock_types", record, object_id=feedstock_type.id)


def stats(store: Store, counters: RequestCounters) -> dict[str, Any]:
    return {
        "objects": store.counts(),
        "duplicate_supplier_reference_ids": store.duplicate_supplier_reference_ids(),
        "requests": counters.snapshot(),
    }
