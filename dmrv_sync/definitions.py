"""The one place that wires Dagster: assets, sensors, schedules and resources are added here."""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions(assets=[], sensors=[], schedules=[], resources={})
