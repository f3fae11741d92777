"""The Dagster layer: assets, sensors, schedules and resources generated from the registry adapters.

`dmrv_sync.definitions` wires them; nothing here calls a registry except through the sync core.
"""
