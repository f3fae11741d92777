"""Fault injection: the failures a client of the real registry must survive, on demand and repeatable.

Every probabilistic decision draws from one `random.Random(seed)` behind a lock, in a fixed order per
request (latency jitter, connection reset, server error, 422 rules, lost response), and only for the
faults that apply to the request. So the same seed, configuration and request sequence give the same
faults. The rate limit is a token bucket on the wall clock, not random.

Scope: each fault may name `methods` (e.g. ["POST"]) and a `path` regex, searched in the path below
/mrv/v0 (e.g. "^/production_batches$"); both default to every request. Admin routes are never faulted.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Rate = float  # a probability per request, 0..1
_TOKEN_EPSILON = 1e-9


class FaultScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: list[str] | None = Field(default=None, description="Only these HTTP methods; null: all.")
    path: str | None = Field(default=None, description="Regex searched in the path below /mrv/v0.")

    @field_validator("methods")
    @classmethod
    def _upper(cls, methods: list[str] | None) -> list[str] | None:
        return None if methods is None else [m.upper() for m in methods]

    @field_validator("path")
    @classmethod
    def _compiles(cls, path: str | None) -> str | None:
        if path is not None:
            re.compile(path)
        return path

    def applies(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or re.search(self.path, path) is not None


class LatencyFault(FaultScope):
    fixed_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0, description="Uniform 0..jitter_ms added to fixed_ms.")


class RateLimitFault(FaultScope):
    rate_per_second: float = Field(gt=0, description="Tokens added per second.")
    burst: int = Field(default=1, ge=1, description="Bucket size: requests allowed at once.")


class ServerErrorFault(FaultScope):
    rate: Rate = Field(ge=0, le=1)
    statuses: list[int] = Field(default_factory=lambda: [503, 500], min_length=1)

    @field_validator("statuses")
    @classmethod
    def _5xx(cls, statuses: list[int]) -> list[int]:
        if any(not 500 <= s <= 599 for s in statuses):
            raise ValueError("statuses must be 5xx codes")
        return statuses


class ConnectionResetFault(FaultScope):
    """The request is read, nothing is processed or stored, and the TCP connection is reset (RST)."""

    rate: Rate = Field(ge=0, le=1)


class LostResponseFault(FaultScope):
    """The request is processed (a create stores its object), then the answer is lost: `drop` closes
    the connection without answering; `delay` answers after `delay_seconds`, past the client's timeout.
    Applies only to successful (2xx) answers."""

    rate: Rate = Field(ge=0, le=1)
    mode: Literal["drop", "delay"] = "drop"
    delay_seconds: float = Field(default=30.0, ge=0)


class ValidationErrorRule(FaultScope):
    """A 422 in the spec's format for matching requests; nothing is stored."""

    supplier_reference_id: str | None = Field(
        default=None, description="Regex searched in the body's supplier_reference_id; null: any body."
    )
    rate: Rate = Field(default=1.0, ge=0, le=1)
    loc: list[str | int] | None = Field(
        default=None, description="Default: body.supplier_reference_id when that regex is set, else body."
    )
    msg: str = "Value error, rejected by the registry"
    type: str = "value_error"

    @field_validator("supplier_reference_id")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            re.compile(pattern)
        return pattern

    def matches_body(self, supplier_reference_id: Any) -> bool:
        if self.supplier_reference_id is None:
            return True
        return (
            isinstance(supplier_reference_id, str)
            and re.search(self.supplier_reference_id, supplier_reference_id) is not None
        )

    def error_detail(self, supplier_reference_id: Any) -> dict[str, Any]:
        if self.loc is not None:
            loc = self.loc
        elif self.supplier_reference_id is not None:
            loc = ["body", "supplier_reference_id"]
        else:
            loc = ["body"]
        return {"detail": [{"loc": loc, "msg": self.msg, "type": self.type, "input": supplier_reference_id}]}


class FaultConfig(BaseModel):
    """The whole fault configuration; `POST /_emulator/faults` replaces it (and restarts the random
    sequence from `seed` and refills the rate-limit bucket). Sections left null are off."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    latency: LatencyFault | None = None
    rate_limit: RateLimitFault | None = None
    server_errors: ServerErrorFault | None = None
    connection_reset: ConnectionResetFault | None = None
    lost_response: LostResponseFault | None = None
    validation_errors: list[ValidationErrorRule] = Field(default_factory=list)
    credentials_revoked: bool = Field(
        default=False,
        description="Every API request is answered 401, as when the organisation's credential is revoked; "
        "set it back to false to restore it.",
    )


FAULT_KINDS = (
    "latency",
    "rate_limit",
    "server_error",
    "connection_reset",
    "lost_response",
    "validation_error",
    "credentials_revoked",
)


class FaultInjector:
    """Decides, per request, which faults fire. Thread-safe; one instance per server."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._random = random.Random(config.seed)
            self._tokens = float(config.rate_limit.burst) if config.rate_limit else 0.0
            self._refilled_at = time.monotonic()

    def restart(self) -> None:
        """Back to the start of the seeded sequence, bucket full (used by the admin reset)."""
        self.configure(self.config)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def _draw(self, rate: float) -> bool:
        # rate 0 draws nothing, so turning a fault off does not shift the others' sequence.
        return rate > 0 and self._random.random() < rate

    def latency_seconds(self, method: str, path: str) -> float:
        with self._lock:
            fault = self._config.latency
            if fault is None or not fault.applies(method, path):
                return 0.0
            jitter = self._random.uniform(0, fault.jitter_ms) if fault.jitter_ms else 0.0
            return (fault.fixed_ms + jitter) / 1000.0

    def connection_reset(self, method: str, path: str) -> bool:
        with self._lock:
            fault = self._config.connection_reset
            return fault is not None and fault.applies(method, path) and self._draw(fault.rate)

    def rate_limited(self, method: str, path: str, arrived_at: float | None = None) -> int | None:
        """None when the request may pass (a token is taken), else the Retry-After in whole seconds:
        the time until a token is available, rounded up, at least 1 (HTTP's delta-seconds is an integer).

        `arrived_at` (time.monotonic()) is when the request was read: the bucket is charged at arrival,
        not after this thread's routing and locking, whose variable delay would otherwise shorten or
        stretch the gap between two requests. Handler threads may reach here out of arrival order, so
        time never runs backwards for the bucket. A token counts as whole within 1e-9 (float rounding
        of elapsed × rate must not turn a request exactly 1/rate after the previous one into a 429)."""
        with self._lock:
            fault = self._config.rate_limit
            if fault is None or not fault.applies(method, path):
                return None
            now = max(self._refilled_at, time.monotonic() if arrived_at is None else arrived_at)
            self._tokens = min(
                float(fault.burst), self._tokens + (now - self._refilled_at) * fault.rate_per_second
            )
            self._refilled_at = now
            if self._tokens >= 1.0 - _TOKEN_EPSILON:
                self._tokens = max(0.0, self._tokens - 1.0)
                return None
            return max(1, math.ceil((1.0 - self._tokens) / fault.rate_per_second))

    def server_error(self, method: str, path: str) -> int | None:
        with self._lock:
            fault = self._config.server_errors
            if fault is None or not fault.applies(method, path) or not self._draw(fault.rate):
                return None
            return self._random.choice(fault.statuses)

    def validation_error(
        self, method: str, path: str, supplier_reference_id: Any
    ) -> ValidationErrorRule | None:
        with self._lock:
            for rule in self._config.validation_errors:
                if (
                    rule.applies(method, path)
                    and rule.matches_body(supplier_reference_id)
                    and self._draw(rule.rate)
                ):
                    return rule
            return None

    def lost_response(self, method: str, path: str) -> LostResponseFault | None:
        with self._lock:
            fault = self._config.lost_response
            if fault is None or not fault.applies(method, path) or not self._draw(fault.rate):
                return None
            return fault
