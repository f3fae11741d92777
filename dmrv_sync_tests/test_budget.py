"""The shared request budget: even pacing, one slot per request, shared across threads and processes.

Assertions look at the reserved slot values (deterministic), not at wall-clock sleeps.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from dmrv_sync.db.migrate import upgrade
from dmrv_sync.db.session import get_engine, get_session_factory
from dmrv_sync.db.sync_state import RequestBudget as RequestBudgetRow
from dmrv_sync.registries.budget import (
    DEFAULT_JITTER_ALLOWANCE,
    DatabaseBudget,
    LocalBudget,
    UnlimitedBudget,
    budget_key,
    late_tolerance_for,
)
from dmrv_sync.registries.isometric.client import IsometricClient
from dmrv_sync.settings import Settings

EPSILON = 1e-6  # float slack on slot differences


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def assert_spaced(slots: list[float], interval: float) -> None:
    ordered = sorted(slots)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    assert min(gaps) >= interval - EPSILON, f"two slots closer than {interval}: min gap {min(gaps)}"


# --- in memory -----------------------------------------------------------------------------------


def test_local_budget_spaces_slots_evenly() -> None:
    clock = FakeClock()
    budget = LocalBudget(4.0, clock=clock, sleep=clock.sleep)
    slots = [budget.reserve() for _ in range(9)]
    assert slots == pytest.approx([clock.now + i * 0.25 for i in range(9)])


def test_n_acquires_at_rate_r_take_n_over_r() -> None:
    clock = FakeClock()
    start = clock.now
    budget = LocalBudget(2.0, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        budget.acquire()
    # The first goes at once, each next one 1/R later: (N-1)/R for N requests.
    assert clock.now - start == pytest.approx(10 / 2.0)


def test_idle_time_does_not_accumulate_a_burst() -> None:
    clock = FakeClock()
    budget = LocalBudget(1.0, clock=clock, sleep=clock.sleep)
    budget.reserve()
    clock.now += 100  # long idle: a token bucket would now allow a burst; pacing does not
    assert [budget.reserve() for _ in range(3)] == [clock.now, clock.now + 1, clock.now + 2]


def test_local_budget_is_thread_safe() -> None:
    budget = LocalBudget(50.0)
    slots: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [budget.reserve() for _ in range(50)]
        with lock:
            slots.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 400
    assert_spaced(slots, 1 / 50.0)


def test_unlimited_budget_never_waits() -> None:
    budget = UnlimitedBudget()
    for _ in range(1000):
        budget.acquire()


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        LocalBudget(0)


def test_budget_key_is_a_digest_not_the_credential() -> None:
    secret = "cs-live-abcdef0123456789"
    key = budget_key("isometric", secret)
    assert key.startswith("isometric:") and len(key) == len("isometric:") + 16
    assert secret not in key
    assert key == budget_key("isometric", secret)
    assert key != budget_key("isometric", secret + "x")
    assert key != budget_key("puro", secret)


# --- in the database (SQLite and PostgreSQL) -----------------------------------------------------


def test_database_budget_schedule(db_url: str) -> None:
    clock = FakeClock()
    budget = DatabaseBudget.for_credential(
        db_url, "isometric", "cs-secret-1", 2.0, clock=clock, sleep=clock.sleep
    )
    assert [budget.reserve() for _ in range(5)] == pytest.approx([clock.now + i * 0.5 for i in range(5)])
    clock.now += 60
    assert budget.reserve() == pytest.approx(clock.now)

    with get_session_factory(db_url)() as session:
        rows = session.scalars(select(RequestBudgetRow)).all()
    assert [(r.key, r.next_slot_at) for r in rows] == [(budget.key, pytest.approx(clock.now + 0.5))]
    assert "cs-secret-1" not in rows[0].key


def test_database_budget_acquire_sleeps_until_the_slot(db_url: str) -> None:
    clock = FakeClock()
    budget = DatabaseBudget(db_url, "isometric:test", 5.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(6):
        budget.acquire()
    assert clock.now - start == pytest.approx(5 * 0.2)


def test_budgets_with_one_key_share_the_pace_and_other_keys_do_not(db_url: str) -> None:
    clock = FakeClock()
    first = DatabaseBudget(db_url, "isometric:aaaa", 1.0, clock=clock)
    second = DatabaseBudget(db_url, "isometric:aaaa", 1.0, clock=clock)
    other = DatabaseBudget(db_url, "isometric:bbbb", 1.0, clock=clock)
    slots = [first.reserve(), second.reserve(), first.reserve(), second.reserve()]
    assert slots == pytest.approx([clock.now + i for i in range(4)])
    assert other.reserve() == pytest.approx(clock.now)


def test_database_budget_across_threads(db_url: str) -> None:
    rate = 20.0
    budget = DatabaseBudget(db_url, "isometric:threads", rate)
    slots: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            mine = [budget.reserve() for _ in range(15)]
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            return
        with lock:
            slots.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(slots) == 90
    assert_spaced(slots, 1 / rate)


def _reserve_in_child(url: str, key: str, rate: float, count: int, results: multiprocessing.Queue) -> None:
    try:
        budget = DatabaseBudget(url, key, rate)
        results.put([budget.reserve() for _ in range(count)])
    except BaseException as exc:  # pragma: no cover - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def _reserve_across_processes(url: str, processes: int, per_process: int, rate: float) -> list[float]:
    get_engine(url).dispose()  # no pooled connection may cross into a child
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    children = [
        context.Process(
            target=_reserve_in_child, args=(url, "isometric:processes", rate, per_process, results)
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    collected: list[float] = []
    for _ in children:
        batch = results.get(timeout=120)
        assert isinstance(batch, list), batch
        collected.extend(batch)
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return collected


def test_database_budget_across_processes(db_url: str) -> None:
    rate = 10.0
    slots = _reserve_across_processes(db_url, processes=4, per_process=20, rate=rate)
    assert len(slots) == 80
    assert_spaced(slots, 1 / rate)
    with get_session_factory(db_url)() as session:
        row = session.get(RequestBudgetRow, "isometric:processes")
    assert row is not None
    assert row.next_slot_at == pytest.approx(max(slots) + 1 / rate)


@pytest.mark.postgres
def test_postgres_budget_under_heavy_process_concurrency(postgres_db_url: str) -> None:
    rate = 100.0
    slots = _reserve_across_processes(postgres_db_url, processes=8, per_process=25, rate=rate)
    assert len(slots) == 200
    assert_spaced(slots, 1 / rate)


def test_first_use_races_create_one_row(db_url: str) -> None:
    """Many budgets that all start with no row: each insert-if-missing races, one row results."""
    barrier = threading.Barrier(6)
    slots: list[float] = []
    lock = threading.Lock()

    def work(make: Callable[[], DatabaseBudget]) -> None:
        budget = make()
        barrier.wait()
        slot = budget.reserve()
        with lock:
            slots.append(slot)

    threads = [
        threading.Thread(target=work, args=(lambda: DatabaseBudget(db_url, "isometric:race", 5.0),))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 6
    assert_spaced(slots, 0.2)
    with get_session_factory(db_url)() as session:
        assert len(session.scalars(select(RequestBudgetRow)).all()) == 1


def test_a_sleeper_woken_too_late_gives_its_slot_up_and_queues_again() -> None:
    """A stalled process must not send closer than 1/rate to the next, already reserved slot."""
    now = [100.0]
    stalls = [0.030]  # the first wake-up comes 30 ms late; later ones on time

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds + (stalls.pop(0) if stalls else 0.0)

    budget = LocalBudget(10, clock=clock, sleep=sleep, jitter_allowance=0.004)
    budget.acquire()  # the first slot is "now": no sleep, on time
    sent_first = now[0]
    budget.acquire()  # reserves 100.104, wakes at 100.134: late, so it takes 100.208 instead
    assert now[0] - sent_first >= 2 * budget.interval - 1e-9
    assert now[0] == pytest.approx(100.208)


@pytest.mark.parametrize(("stall", "sent_at"), [(0.030, 100.050), (0.060, 100.100)])
def test_against_a_bucket_of_five_a_sender_stalled_past_two_intervals_queues_again(
    stall: float, sent_at: float
) -> None:
    """50 req/s against a bucket of 5: a sender woken 60 ms late would go out with the on-time senders
    of the slots reserved after its own (several senders of one stalled process waking at once make a
    burst past 5): it takes the next free slot instead. 30 ms late is within (5 - 1) / 2 intervals."""
    now = [100.0]
    budget = LocalBudget(
        50, clock=lambda: now[0], sleep=lambda s: None, late_tolerance=late_tolerance_for(50, 5)
    )

    def sleep(seconds: float) -> None:
        if stall_left:  # meanwhile, other senders take 100.04, 100.06 and 100.08
            for _ in range(3):
                budget.reserve()
            now[0] += seconds + stall_left.pop()
        else:
            now[0] += seconds

    stall_left = [stall]
    budget._sleep = sleep
    budget.acquire()  # 100.000, on time
    budget.acquire()  # 100.020, woken `stall` late
    assert now[0] == pytest.approx(sent_at)


@pytest.mark.parametrize(
    ("rate", "burst", "interval"),
    [
        (50, 1, 0.020 + DEFAULT_JITTER_ALLOWANCE),
        (50, 5, 0.020),
        (2, 1, 0.500 + 0.010),  # slow: 2 % of the interval, more than 4 ms
        (2, 2, 0.500),
    ],
)
def test_the_jitter_allowance_is_spent_only_against_a_limiter_without_room_for_a_burst(
    tmp_path: Path, rate: float, burst: int, interval: float
) -> None:
    """At 50 req/s the 4 ms allowance costs a sixth of the throughput: with ISOMETRIC_RATE_LIMIT_BURST
    of 2 or more (the registry's bucket absorbs arrival jitter) requests are paced at exactly the rate.
    At a slow rate the allowance is 2 % of the interval: a request 5 ms late still leaves a full 1/rate
    before the next one."""
    settings = Settings(
        dmrv_database_url=f"sqlite:///{tmp_path / 'dmrv.db'}",
        isometric_requests_per_second=rate,
        isometric_rate_limit_burst=burst,
        isometric_base_url="http://127.0.0.1:9",  # the demo credentials are for a local registry only
    )
    upgrade(settings.database_url)
    with IsometricClient.from_settings(settings) as client:
        budget = client._budget
        assert isinstance(budget, DatabaseBudget)
        slots = [budget.reserve() for _ in range(3)]
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert gaps == pytest.approx(
        [interval, interval], abs=EPSILON
    )  # epoch seconds: about 0.1 µs of float noise
