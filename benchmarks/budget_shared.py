"""Benchmark: N processes sharing one Isometric credential stay under the registry's rate limit.

    .venv/bin/python -m benchmarks.budget_shared [--rate 10] [--seconds 20] [--processes 2]
                                                 [--database-url URL]

What it does:

1. starts the Certify emulator as a separate process (`python -m dmrv_sync.emulator`) with a token-bucket
   rate limit of `--rate` requests/s and a bucket of 1 (no burst: the strictest limiter there is);
2. makes a fresh DMRV database and migrates it: a SQLite file in a temporary directory by default, or,
   with `--database-url postgresql+psycopg://user@host:port/NAME`, a scratch PostgreSQL database NAME
   that it creates and drops (it refuses to touch a database that already exists);
3. starts `--processes` worker processes; each builds an `IsometricClient` paced by
   `DatabaseBudget.for_credential(...)` for the SAME credential at `--rate` requests/s, and issues cheap
   reads (`GET /production_batches?first=1`) until the window of `--seconds` closes. Clients make one
   attempt per call (`max_attempts=1`), so a 429 is never retried away;
4. prints one table. The 429 count and the request total come from the emulator's own counters
   (`GET /_emulator/stats`), the ground truth, not from the workers.

Exit status 0 when the targets are met — no 429 and a combined rate of at least 95% of `--rate` — else 1
(2 when the run itself failed). It is a benchmark, not a test: it takes `--seconds` of wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dmrv_sync.registries.budget import DEFAULT_JITTER_ALLOWANCE

TARGET_RATIO = 0.95
START_TIMEOUT_SECONDS = 30.0
READY_PREFIX = "emulator listening on "


class WindowClosed(Exception):
    """Raised by the windowed budget instead of granting a slot after the measurement window."""


class WindowedBudget:
    """The shared DatabaseBudget, plus a count of the requests it let out inside the window."""

    def __init__(self, inner: Any, end_at: float) -> None:
        self.inner = inner
        self.end_at = end_at
        self.granted = 0
        self.sent_at: list[float] = []  # when each slot was granted (epoch s): the send times

    def acquire(self) -> None:
        self.inner.acquire()  # waits for this process's slot in the shared schedule
        now = time.time()
        if now >= self.end_at:
            raise WindowClosed
        self.granted += 1
        self.sent_at.append(now)


@dataclass
class WorkerResult:
    index: int
    sent: int
    rate_limited: int  # 429s this worker saw (the emulator's count is the one reported)
    errors: list[str]
    sent_at: list[float]


def _worker(
    index: int,
    base_url: str,
    database_url: str,
    rate: float,
    jitter_allowance: float,
    seconds: float,
    ready: Any,
    go: Any,
    start_at: Any,
    results: Any,
) -> None:
    from dmrv_sync.db.session import get_engine
    from dmrv_sync.registries.budget import DatabaseBudget
    from dmrv_sync.registries.errors import RateLimited, RegistryError
    from dmrv_sync.registries.isometric import REGISTRY_NAME, IsometricClient
    from dmrv_sync.settings import Settings

    settings = Settings()
    secret = settings.isometric_client_secret
    engine = get_engine(database_url)
    shared = DatabaseBudget.for_credential(
        engine, REGISTRY_NAME, secret.get_secret_value(), rate, jitter_allowance=jitter_allowance
    )
    budget = WindowedBudget(shared, end_at=float("inf"))
    errors: list[str] = []
    rate_limited = 0
    with IsometricClient(
        base_url=base_url,
        client_secret=secret,
        access_token=settings.isometric_access_token,
        project_id=settings.isometric_project_id,
        budget=budget,
        max_attempts=1,
    ) as client:
        # Warm up (database connection, HTTP keep-alive connection) before the window opens; the
        # emulator's counters and bucket are reset after every worker has done this, so a 429 here
        # (connection set-up time differs between processes) does not count.
        with suppress(RegistryError):
            next(client.paginate("/production_batches", page_size=1), None)
        ready.put(index)
        go.wait()
        budget.granted, budget.sent_at = 0, []
        budget.end_at = start_at.value + seconds
        time.sleep(max(0.0, start_at.value - time.time()))
        while True:
            try:
                next(client.paginate("/production_batches", page_size=1), None)
            except WindowClosed:
                break
            except RateLimited:
                rate_limited += 1
            except RegistryError as exc:
                errors.append(str(exc))
    results.put(WorkerResult(index, budget.granted, rate_limited, errors[:5], budget.sent_at))


@contextmanager
def emulator_process(
    rate: float | None, log_path: Path, faults: dict[str, Any] | None = None
) -> Iterator[str]:
    """The emulator as a separate process, with a strict token bucket of `rate` req/s (None: unlimited)
    and any other `faults`; yields its /mrv/v0 base URL."""
    config = dict(faults or {})
    if rate is not None:
        config["rate_limit"] = {"rate_per_second": rate, "burst": 1}
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dmrv_sync.emulator",
                "--port",
                "0",
                "--quiet",
                "--faults",
                json.dumps(config),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        try:
            line = lines.get(timeout=START_TIMEOUT_SECONDS)
        except queue.Empty:
            line = ""
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(f"the emulator did not start ({line!r}); its log: {log_path.read_text()}")
        yield line[len(READY_PREFIX) :].strip()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def scratch_database(url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh, migrated DMRV database: SQLite in `workdir`, or a PostgreSQL database created and dropped."""
    from dmrv_sync.db.migrate import upgrade

    if url is None or url.startswith("sqlite"):
        sqlite_url = url or f"sqlite:///{workdir / 'dmrv.sqlite3'}"
        upgrade(sqlite_url)
        yield sqlite_url
        return
    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("postgresql"):
        raise SystemExit(f"--database-url must be SQLite or PostgreSQL, not {parsed.get_backend_name()}")
    name = parsed.database or f"dmrv_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists:
            raise SystemExit(f"database {name!r} already exists; name a scratch database that does not")
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = parsed.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(scratch)
        yield scratch
    finally:
        from dmrv_sync.db.session import get_engine

        get_engine(scratch).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(
    rate: float, seconds: float, processes: int, database_url: str | None, jitter_allowance: float
) -> int:
    from dmrv_sync.emulator.admin_client import EmulatorAdmin

    with tempfile.TemporaryDirectory(prefix="dmrv-bench-") as tmp:
        workdir = Path(tmp)
        with (
            scratch_database(database_url, workdir) as db_url,
            emulator_process(rate, workdir / "emulator.log") as base_url,
        ):
            admin = EmulatorAdmin(base_url.removesuffix("/mrv/v0") + "/_emulator")
            ctx = mp.get_context("spawn")
            ready, results = ctx.Queue(), ctx.Queue()
            go, start_at = ctx.Event(), ctx.Value("d", 0.0)
            workers = [
                ctx.Process(
                    target=_worker,
                    args=(n, base_url, db_url, rate, jitter_allowance, seconds, ready, go, start_at, results),
                    name=f"budget-worker-{n}",
                )
                for n in range(processes)
            ]
            for worker in workers:
                worker.start()
            try:
                for _ in workers:
                    ready.get(timeout=60)
                admin.reset()  # counters to zero, the bucket full: the window starts clean
                start_at.value = time.time() + 0.5
                go.set()
                collected = [results.get(timeout=seconds + 60) for _ in workers]
            finally:
                for worker in workers:
                    worker.join(timeout=10)
                    if worker.is_alive():
                        worker.terminate()
            stats = admin.stats()["requests"]
            admin.close()
    dialect = "postgresql" if database_url and not database_url.startswith("sqlite") else "sqlite"
    return report(rate, jitter_allowance, seconds, dialect, sorted(collected, key=lambda r: r.index), stats)


def report(
    rate: float,
    jitter_allowance: float,
    seconds: float,
    dialect: str,
    results: list[WorkerResult],
    stats: dict[str, Any],
) -> int:
    combined = sum(r.sent for r in results)
    emulator_total = int(stats["total"])
    by_status = {str(k): int(v) for k, v in stats["by_status"].items()}
    too_many = by_status.get("429", 0)
    achieved = combined / seconds
    ratio = achieved / rate
    rows = [
        ("database", dialect),
        ("processes", str(len(results))),
        ("configured rate (req/s), emulator limit", f"{rate:g} (token bucket, burst 1)"),
        ("budget interval (s)", f"1/{rate:g} + {jitter_allowance:g} jitter allowance"),
        ("duration (s)", f"{seconds:g}"),
        *((f"requests sent, process {r.index}", str(r.sent)) for r in results),
        ("requests sent, combined", str(combined)),
        ("requests counted by the emulator", str(emulator_total)),
        ("combined req/s", f"{achieved:.3f}"),
        ("429 answers (emulator stats)", str(too_many)),
        ("emulator answers by status", ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items()))),
        ("achieved / limit", f"{ratio:.4f}"),
        ("gap between sends, min / median (ms)", _gaps(results)),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 32}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    errors = [e for r in results for e in r.errors]
    for error in errors:
        print(f"worker error: {error}")
    ok = too_many == 0 and ratio >= TARGET_RATIO and not errors
    print(f"targets (0 x 429, >= {TARGET_RATIO:.0%} of the limit): " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


def _gaps(results: list[WorkerResult]) -> str:
    sent = sorted(t for r in results for t in r.sent_at)
    gaps = sorted((b - a) * 1000 for a, b in zip(sent, sent[1:], strict=False))
    if not gaps:
        return "-"
    return f"{gaps[0]:.2f} / {gaps[len(gaps) // 2]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.budget_shared", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rate", type=float, default=10.0, help="registry limit and budget rate, req/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--processes", type=int, default=2, help="worker processes sharing the credential")
    parser.add_argument(
        "--jitter-allowance",
        type=float,
        default=DEFAULT_JITTER_ALLOWANCE,
        help="seconds added to each budget interval (default: the clients' default, %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        help="DMRV database: SQLite temp file by default; postgresql+psycopg://…/NAME creates and drops NAME",
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.processes < 1 or args.jitter_allowance < 0:
        parser.error("--rate and --seconds must be > 0, --processes >= 1, --jitter-allowance >= 0")
    try:
        return run(args.rate, args.seconds, args.processes, args.database_url, args.jitter_allowance)
    except (RuntimeError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
