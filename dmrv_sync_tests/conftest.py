"""Shared fixtures live in dmrv_sync_tests/fixtures/, one module per real part they start."""

import pytest

pytest_plugins = [
    "dmrv_sync_tests.fixtures.db",
    "dmrv_sync_tests.fixtures.emulator",
    "dmrv_sync_tests.fixtures.contract",
    "dmrv_sync_tests.fixtures.sync",
    "dmrv_sync_tests.fixtures.dagster",
    "pytester",  # test_contract.py runs an inner pytest to prove a contract violation fails its test
]


_FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Measurements a test reports (requests per object, ...): printed at the end of the run."""
    return _FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """Say how many PostgreSQL-backed tests ran, so a CI log proves the PostgreSQL path was exercised."""
    for line in _FIGURES:
        terminalreporter.write_line(f"figure: {line}")
    counts = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        reports = terminalreporter.stats.get(outcome, [])
        counts[outcome] = sum(
            1 for r in reports if getattr(r, "when", "call") in ("call", "setup") and "postgres" in r.keywords
        )
    terminalreporter.write_line(
        "postgres-backed tests: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    )
