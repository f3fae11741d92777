"""Request counters behind `GET /_emulator/stats`. Only /mrv/v0 requests count; admin calls do not."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from dmrv_sync.emulator.faults import FAULT_KINDS


class RequestCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_route: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._creates: Counter[str] = Counter()
            self._faults: Counter[str] = Counter({kind: 0 for kind in FAULT_KINDS})

    def record_request(self, method: str, route_template: str) -> None:
        with self._lock:
            self._total += 1
            self._by_route[f"{method} {route_template}"] += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self._by_status[str(status)] += 1

    def record_create(self, resource: str) -> None:
        with self._lock:
            self._creates[resource] += 1

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "by_route": dict(sorted(self._by_route.items())),
                "by_status": dict(sorted(self._by_status.items())),
                "creates_succeeded": {
                    **dict(sorted(self._creates.items())),
                    "total": sum(self._creates.values()),
                },
                "faults_injected": dict(self._faults),
            }
