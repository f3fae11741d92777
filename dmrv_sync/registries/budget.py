"""The request budget: one pace per registry credential, shared by every process and Dagster run.

GCRA-style pacing. The budget row holds `next_slot_at`, the earliest moment the next request may go
out. Each request reserves a slot with one atomic statement,

    UPDATE request_budgets SET next_slot_at = max(next_slot_at, :now) + :interval
    WHERE key = :key RETURNING next_slot_at

and the reserved slot is the returned value minus the interval; the caller then sleeps until it.
Requests are spaced exactly `1/rate` apart whatever the number of processes, so a registry that counts
with a token bucket at the same rate never sees a burst and never answers 429 because of us.

Why not pyrate-limiter (installed, used by nothing here): its buckets allow bursts up to the bucket size,
its cross-process backends are a file lock (one machine, and a lock held across a sleep) or Redis (one
more service to run); ours costs one UPDATE per request, needs no lock held while waiting, and lives in
the DMRV database beside the rest of the sync state, on SQLite and PostgreSQL alike.

Clocks: slots are epoch seconds from the local clock, so every process sharing a budget must share a
clock (one machine, or NTP-synced hosts against one PostgreSQL).

The key is the registry name plus a short sha256 digest of the credential: the secret itself is never
stored (design invariant 7).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, cast

from sqlalchemy import Engine, Float, Table, bindparam, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dmrv_sync.db.session import get_engine
from dmrv_sync.db.sync_state import RequestBudget as RequestBudgetRow

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Added to every interval by the clients built from settings when the registry's limiter has no room
# for a burst (see _PacedBudget). Measured against the emulator's burst-1 bucket: with two worker
# processes and nothing else running (benchmarks/budget_shared.py) arrivals move by ±1-3 ms around
# their slots and 4 ms removed the 429s; it costs 3.8 % of the throughput at 10 req/s (below 5 req/s
# the share below applies: 2 %).
DEFAULT_JITTER_ALLOWANCE = 0.004
# Lateness does not shrink with the rate, and a fixed 4 ms is a small share of a slow interval: at
# 2 req/s, with two application runs sharing the budget, one arrival in 985 came 4-5 ms late and met a
# 429 (benchmarks.throughput --rate 2). So the allowance is at least this share of the interval
# (10 ms at 2 req/s; it costs the same share of the throughput).
JITTER_ALLOWANCE_SHARE = 0.02
# A thread woken for its slot must take the GIL back from the process's other threads, which hold it
# for up to the interpreter's switch interval (5 ms by default) each: a paced client sets this.
PACED_SWITCH_INTERVAL = 0.001
# How many times one acquire() gives up a slot it woke too late for before sending anyway.
MAX_LATE_RESERVATIONS = 5


def late_tolerance_for(rate: float, burst: int) -> float | None:
    """How late a woken sender may still go against a bucket of `burst` (None: the allowance decides)."""
    return (burst - 1) / (2 * rate) if burst > 1 else None


def jitter_allowance_for(rate: float) -> float:
    """The allowance against a limiter without room for a burst, at `rate` requests per second."""
    return max(DEFAULT_JITTER_ALLOWANCE, JITTER_ALLOWANCE_SHARE / rate)


def pacing_for(rate: float, burst: int) -> tuple[float, float | None]:
    """A paced budget's (jitter_allowance, late_tolerance) against a registry limiter of `burst` at
    `rate`. A limiter of burst 1 rejects an arrival a millisecond early; one with room for two or more
    absorbs arrival jitter, and an allowance would only cost throughput (4 ms × 50 req/s = 20 %)."""
    return (jitter_allowance_for(rate) if burst <= 1 else 0.0), late_tolerance_for(rate, burst)


class RequestBudget(Protocol):
    """Anything that paces requests. `acquire()` blocks until this request may be sent."""

    def acquire(self) -> None: ...


def budget_key(registry: str, credential: str) -> str:
    """`isometric:3f2a…`: identifies one credential's budget without storing the credential."""
    digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()[:16]
    return f"{registry}:{digest}"


class UnlimitedBudget:
    """No pacing (tests against mocks, or a registry without limits)."""

    def acquire(self) -> None:
        return None

    def __repr__(self) -> str:
        return "UnlimitedBudget()"


class _PacedBudget:
    """Shared part: reserve a slot (subclass), then sleep until it.

    `jitter_allowance` (seconds, default 0) is added to every interval. Slots are exact, but a registry
    counts arrivals: sleep overshoot, request preparation and the server's own dispatch move each arrival
    by a millisecond or two, and a strict limiter (a token bucket of size 1 at exactly our rate) rejects
    any arrival closer than 1/rate to the previous one, while crediting nothing for a late one. Paced at
    exactly the limit, about a third of the requests then meet a 429 (benchmarks/budget_shared.py); an
    allowance larger than the arrival jitter removes them at a cost of allowance × rate of the throughput.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        jitter_allowance: float = 0.0,
        late_tolerance: float | None = None,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second (got {rate!r})")
        if jitter_allowance < 0:
            raise ValueError(f"jitter_allowance must be >= 0 seconds (got {jitter_allowance!r})")
        self.rate = rate
        self.jitter_allowance = jitter_allowance
        self.interval = 1.0 / rate + jitter_allowance
        # How late a woken sender may go (see acquire); None: however late.
        self.late_tolerance = (
            late_tolerance
            if late_tolerance is not None
            else (jitter_allowance / 2 if jitter_allowance > 0 else None)
        )
        self._clock = clock
        self._sleep = sleep

    def reserve(self) -> float:
        """Reserve the next slot; returns its time (epoch seconds). Does not wait."""
        raise NotImplementedError

    def acquire(self) -> None:
        for _ in range(MAX_LATE_RESERVATIONS):
            slot = self.reserve()
            delay = slot - self._clock()
            if delay > 0:
                self._sleep(delay)
            # Woken late (a loaded machine can stall a sleeper for tens of ms), this request would go
            # out closer than 1/rate to the next slot, already reserved by someone else: give the slot
            # up and queue again rather than meet a 429. Against a burst-1 limiter the tolerance is half
            # the allowance (the other half covers the wire); against a bucket of B, (B - 1) / 2
            # intervals: a stalled process's senders then never go out more than B at once.
            if self.late_tolerance is None or self._clock() - slot <= self.late_tolerance:
                return
        # Late every time: go now; a 429 is still handled by the client's retry.


class LocalBudget(_PacedBudget):
    """In-memory pacing for one process (unit tests, no-database use). Thread-safe."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        jitter_allowance: float = 0.0,
        late_tolerance: float | None = None,
    ) -> None:
        super().__init__(
            rate, clock=clock, sleep=sleep, jitter_allowance=jitter_allowance, late_tolerance=late_tolerance
        )
        self._next_slot_at = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            slot = max(self._next_slot_at, self._clock())
            self._next_slot_at = slot + self.interval
            return slot

    def __repr__(self) -> str:
        return f"LocalBudget(rate={self.rate})"


class DatabaseBudget(_PacedBudget):
    """Pacing shared through the `request_budgets` table (SQLite or PostgreSQL); one UPDATE per request."""

    def __init__(
        self,
        engine: Engine | str,
        key: str,
        rate: float,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        jitter_allowance: float = 0.0,
        late_tolerance: float | None = None,
    ) -> None:
        super().__init__(
            rate, clock=clock, sleep=sleep, jitter_allowance=jitter_allowance, late_tolerance=late_tolerance
        )
        if len(key) > 100:
            raise ValueError("budget key longer than 100 characters")
        self.key = key
        self._engine = get_engine(engine) if isinstance(engine, str) else engine
        dialect = self._engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"DatabaseBudget supports SQLite and PostgreSQL, not {dialect}")
        table = cast(Table, RequestBudgetRow.__table__)
        now = bindparam("now", type_=Float)
        interval = bindparam("interval", type_=Float)
        key_param = bindparam("budget_key", type_=table.c.key.type)
        ts = bindparam("ts", type_=table.c.updated_at.type)
        # Two-argument max() is SQLite's scalar maximum; PostgreSQL spells it GREATEST.
        greatest = func.greatest if dialect == "postgresql" else func.max
        self._reserve_stmt = (
            update(table)
            .where(table.c.key == key_param)
            .values(next_slot_at=greatest(table.c.next_slot_at, now) + interval, updated_at=ts)
            .returning(table.c.next_slot_at)
        )
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        self._create_stmt = (
            insert(table)
            .values(key=key_param, next_slot_at=0.0, updated_at=ts)
            .on_conflict_do_nothing(index_elements=["key"])
        )

    @classmethod
    def for_credential(
        cls,
        engine: Engine | str,
        registry: str,
        credential: str,
        rate: float,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        jitter_allowance: float = 0.0,
        late_tolerance: float | None = None,
    ) -> DatabaseBudget:
        """The budget of one registry credential (the key is a digest, never the credential)."""
        return cls(
            engine,
            budget_key(registry, credential),
            rate,
            clock=clock,
            sleep=sleep,
            jitter_allowance=jitter_allowance,
            late_tolerance=late_tolerance,
        )

    def reserve(self) -> float:
        params = {"budget_key": self.key, "interval": self.interval, "ts": datetime.now(UTC)}
        with self._engine.begin() as conn:
            params["now"] = self._clock()
            next_slot_at = conn.execute(self._reserve_stmt, params).scalar_one_or_none()
            if next_slot_at is None:
                # First request with this credential: create the row (a concurrent creator may win),
                # then reserve as usual.
                conn.execute(self._create_stmt, params)
                next_slot_at = conn.execute(self._reserve_stmt, params).scalar_one()
        return float(next_slot_at) - self.interval

    def __repr__(self) -> str:
        return f"DatabaseBudget(key={self.key!r}, rate={self.rate}, dialect={self._engine.dialect.name!r})"
