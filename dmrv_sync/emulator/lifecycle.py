"""What the verifier and the registry do to a submitted GHG statement, which no API call can do:
moved by the admin route, or automatically after a delay (for the demo)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Literal

from pydantic import BaseModel

from dmrv_sync.emulator.errors import ApiError, conflict, not_found
from dmrv_sync.emulator.handlers import utc_now
from dmrv_sync.emulator.store import Store

logger = logging.getLogger(__name__)

VerdictStatus = Literal["VERIFIED", "CREDITS_ISSUED", "FAILED_VERIFICATION"]
DEFAULT_VERIFIER = "Emulated Verification Body Ltd"
# The states each verdict may follow. Issuing straight from AWAITING_VERIFICATION is allowed so a
# test can skip a step; nothing moves a statement back to DRAFT.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "VERIFIED": ("AWAITING_VERIFICATION",),
    "CREDITS_ISSUED": ("AWAITING_VERIFICATION", "VERIFIED"),
    "FAILED_VERIFICATION": ("AWAITING_VERIFICATION", "VERIFIED"),
}


class StatementVerdict(BaseModel):
    """Body of `POST /_emulator/ghg_statements/{id}/status`."""

    status: VerdictStatus
    verifier: str | None = None


def apply_verdict(store: Store, statement_id: str, verdict: StatementVerdict) -> dict[str, Any]:
    with store.lock:
        statement = store.get("ghg_statements", statement_id)
        if statement is None:
            raise not_found(f"GHG statement {statement_id} not found")
        if statement["status"] not in ALLOWED_FROM[verdict.status]:
            raise conflict(
                f"GHG statement {statement_id} is {statement['status']}; {verdict.status} needs one of"
                f" {', '.join(ALLOWED_FROM[verdict.status])}"
            )
        now = utc_now()
        statement.update(status=verdict.status, status_changed_at=now)
        statement["verifier"] = verdict.verifier or statement["verifier"] or DEFAULT_VERIFIER
        if verdict.status == "CREDITS_ISSUED":
            statement["credits_issued_at"] = now
        return store.update("ghg_statements", statement)


class AutoVerifier:
    """Moves each submitted statement to VERIFIED after `delay` seconds, then to CREDITS_ISSUED after
    another `delay`, so the demo's confirmation pulls have something to find."""

    def __init__(self, store: Store, delay_seconds: float, stopping: threading.Event) -> None:
        self._store = store
        self._delay = dt.timedelta(seconds=delay_seconds)
        self._tick = min(0.5, delay_seconds / 4)
        self._stopping = stopping
        self._thread = threading.Thread(target=self._run, name="emulator-auto-verifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self._tick):
            self.advance(dt.datetime.now(dt.UTC))

    def advance(self, now: dt.datetime) -> None:
        for statement in self._store.list(
            "ghg_statements", lambda r: r["status"] in ("AWAITING_VERIFICATION", "VERIFIED")
        ):
            changed_at = dt.datetime.fromisoformat(statement["status_changed_at"])
            if now - changed_at < self._delay:
                continue
            verdict = "VERIFIED" if statement["status"] == "AWAITING_VERIFICATION" else "CREDITS_ISSUED"
            try:
                apply_verdict(self._store, statement["id"], StatementVerdict(status=verdict))
                logger.info("auto-verifier: GHG statement %s is now %s", statement["id"], verdict)
            except ApiError:  # an admin call moved it meanwhile; nothing to do
                logger.debug("auto-verifier could not move %s", statement["id"], exc_info=True)
