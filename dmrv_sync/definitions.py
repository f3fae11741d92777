"""The one place that wires Dagster: assets, checks, sensors, schedules, jobs and resources.

Everything registry-specific is generated from the adapters in `dmrv_sync.registries.catalog`.
"""

from __future__ import annotations

import dagster as dg

from dmrv_sync.orchestration.assets import DATABASE_RESOURCE, build_registry_assets, registry_resource_key
from dmrv_sync.orchestration.jobs import build_jobs
from dmrv_sync.orchestration.report import status_report_job, status_report_schedule, sync_status_report
from dmrv_sync.orchestration.resources import DmrvDatabase, IsometricRegistry
from dmrv_sync.orchestration.sensors import build_entity_sensors

jobs, schedules = build_jobs()

defs = dg.Definitions(
    assets=[*build_registry_assets(), sync_status_report],
    sensors=build_entity_sensors(),
    # Each run is one process: an entity run has one step per registry, and a step process of its
    # own (Dagster's default) cost a second interpreter start and import per run (profiled: about a
    # quarter of the run processes' samples were imports). Pools still bound steps across runs.
    executor=dg.in_process_executor,
    schedules=[*schedules, status_report_schedule],
    jobs=[*jobs, status_report_job],
    resources={
        DATABASE_RESOURCE: DmrvDatabase(),
        # Secrets only through the environment: resolved in the run process, never in run config.
        registry_resource_key("isometric"): IsometricRegistry(
            client_secret=dg.EnvVar("ISOMETRIC_CLIENT_SECRET"),
            access_token=dg.EnvVar("ISOMETRIC_ACCESS_TOKEN"),
        ),
    },
)
