"""One dynamic partitions definition per local entity type, shared by every registry's asset for it.
A partition key is the entity's UUID."""

from __future__ import annotations

import dagster as dg

from dmrv_sync.db.models import ENTITY_MODELS

ENTITY_PARTITIONS: dict[str, dg.DynamicPartitionsDefinition] = {
    entity_type: dg.DynamicPartitionsDefinition(name=entity_type) for entity_type in ENTITY_MODELS
}
