"""Shared fixtures live in dmrv_sync_tests/fixtures/, one module per real part they start."""

pytest_plugins = [
    "dmrv_sync_tests.fixtures.db",
]
