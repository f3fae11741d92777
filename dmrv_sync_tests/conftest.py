"""Shared fixtures live in dmrv_sync_tests/fixtures/, one module per real part they start."""

pytest_plugins = [
    "dmrv_sync_tests.fixtures.db",
    "dmrv_sync_tests.fixtures.emulator",
    "dmrv_sync_tests.fixtures.contract",
    "dmrv_sync_tests.fixtures.sync",
]


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """Say how many PostgreSQL-backed tests ran, so a CI log proves the PostgreSQL path was exercised."""
    counts = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        reports = terminalreporter.stats.get(outcome, [])
        counts[outcome] = sum(
            1 for r in reports if getattr(r, "when", "call") in ("call", "setup") and "postgres" in r.keywords
        )
    terminalreporter.write_line(
        "postgres-backed tests: "
        + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    )
