"""A local emulator of Isometric's Certify API (MRV data ingestion, v0) for the demo and the tests.

It speaks the published spec with the 2026-06 rename of removals to GHG entries applied, checks
references the way the registry does, and injects the failures a client must survive, repeatably.
Start it with `dmrv-sync emulator` / `python -m dmrv_sync.emulator`, or in process with `EmulatorServer`.
"""

from dmrv_sync.emulator.config import EmulatorConfig, Provisioning
from dmrv_sync.emulator.faults import FaultConfig
from dmrv_sync.emulator.server import API_PREFIX, EmulatorServer

__all__ = ["API_PREFIX", "EmulatorConfig", "EmulatorServer", "FaultConfig", "Provisioning"]
