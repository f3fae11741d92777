"""A small client for the emulator's admin routes (/_emulator), for tests and the demo."""

from __future__ import annotations

from typing import Any

import httpx

from dmrv_sync.emulator.faults import FaultConfig


class EmulatorAdmin:
    def __init__(self, admin_url: str, timeout: float = 10.0) -> None:
        """admin_url: http://host:port/_emulator"""
        self._http = httpx.Client(base_url=admin_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def provisioned(self) -> dict[str, Any]:
        return self._call("GET", "/provisioned")

    def provision_feedstock_type(self, name: str, supplier_reference_id: str | None) -> dict[str, Any]:
        """What a user does in the web app; returns the FeedstockType (with its ftt_ id)."""
        return self._call(
            "POST", "/feedstock_types", {"name": name, "supplier_reference_id": supplier_reference_id}
        )

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def set_faults(self, faults: FaultConfig | dict[str, Any]) -> dict[str, Any]:
        payload = faults.model_dump(mode="json") if isinstance(faults, FaultConfig) else faults
        return self._call("POST", "/faults", payload)

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def set_statement_status(
        self, statement_id: str, status: str, verifier: str | None = None
    ) -> dict[str, Any]:
        return self._call(
            "POST", f"/ghg_statements/{statement_id}/status", {"status": status, "verifier": verifier}
        )
