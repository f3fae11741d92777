"""Sensors: one per local entity type. Each tick reads the records changed since its cursor
(updated_at, id), keeps those some registry considers ready (the trigger table), adds their partitions,
and requests runs that cover them in batches (a contiguous range of new partitions per run).

A record whose parents are still on their way to the registry waits (the cursor stops before it), so
children are not sent before their parents; a record whose parent failed is sent anyway and fails with
a message naming the parent. Ready records before a waiting one are held back too, for up to a minute
(DMRV_SENSOR_HOLD_SECONDS), to go in one run with it unless they make half a run already. Run keys
carry the record versions: a version is never requested twice, and a changed record (new updated_at)
comes back.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import select

from dmrv_sync.db.models import ENTITY_MODELS
from dmrv_sync.db.session import get_session_factory
from dmrv_sync.db.sync_state import RegistryIdentity, SyncStatus
from dmrv_sync.orchestration.assets import assets_for_entity_type
from dmrv_sync.orchestration.partitions import ENTITY_PARTITIONS
from dmrv_sync.orchestration.resources import DmrvDatabase
from dmrv_sync.registries.catalog import REGISTRY_ENTITIES, build_rules
from dmrv_sync.settings import get_settings
from dmrv_sync.sync.adapter import RegistryAdapter

# One tick reads up to one full run of records: fewer, fuller runs, each a process start (a tick of
# 1,000 new rows: 0.3-0.4 s, benchmarks/sensor_tick.py).
DEFAULT_RECORDS_PER_TICK = int(os.environ.get("DMRV_SENSOR_RECORDS_PER_TICK", "1000"))
# One run over up to 1,000 partitions (design.md: a ranged run costs Dagster ~27 ms per partition).
PARTITIONS_PER_RUN = int(os.environ.get("DMRV_PARTITIONS_PER_RUN", "1000"))
SENSOR_INTERVAL_SECONDS = int(os.environ.get("DMRV_SENSOR_INTERVAL_SECONDS", "30"))
# A child waits for parents on their way to the registry at most this long, then goes (and fails
# with a message naming the parent) rather than holding every later record back.
MAX_PARENT_WAIT = timedelta(minutes=10)
# Changed records are re-run in ranges of existing partitions; unchanged ones inside a range are cheap.
MAX_RANGE_GAP = 50
# Ready records met before one that waits for its parent are held back, for at most this long, so they
# go in one run with the records behind them once the parents' run ends, not in a small run of their
# own one hand-over earlier (800 applications went as [2] and, 6 s later, [400, 398]).
HOLD_FOR_PARENTS = timedelta(seconds=int(os.environ.get("DMRV_SENSOR_HOLD_SECONDS", "60")))


@dataclass(frozen=True)
class Position:
    updated_at: datetime
    entity_id: str

    def fields(self) -> dict[str, str]:
        return {"updated_at": self.updated_at.isoformat(), "id": self.entity_id}

    def dump(self) -> str:
        return json.dumps(self.fields())

    @classmethod
    def load(cls, cursor: str | None) -> Position | None:
        raw = json.loads(cursor) if cursor else {}
        if "updated_at" not in raw:
            return None
        return cls(datetime.fromisoformat(raw["updated_at"]), raw["id"])


def held_since(cursor: str | None) -> datetime | None:
    """Since when the cursor's tick has held ready records back (HOLD_FOR_PARENTS), if it has."""
    raw = json.loads(cursor) if cursor else {}
    return datetime.fromisoformat(raw["held_since"]) if "held_since" in raw else None


def holding_cursor(position: Position | None, since: datetime) -> str:
    return json.dumps({**(position.fields() if position else {}), "held_since": since.isoformat()})


def changed_records(session: Any, entity_type: str, after: Position | None, limit: int) -> list[Any]:
    """Records changed after the cursor, oldest first; uses the (updated_at, id) index."""
    model = ENTITY_MODELS[entity_type]
    query = select(model).order_by(model.updated_at, model.id).limit(limit)
    if after is not None:
        query = query.where(model.after(after.updated_at, uuid.UUID(after.entity_id)))
    return list(session.scalars(query))


class ParentGate:
    """Whether a record's parents are settled in every registry (synced, failed, or not going yet)."""

    def __init__(self, session: Any, adapters: list[RegistryAdapter]) -> None:
        self.session = session
        self.adapters = adapters
        self._settled: dict[tuple[str, str, str], bool] = {}

    def waiting_for(self, entity_type: str, record: Any) -> str | None:
        for adapter in self.adapters:
            for parent in adapter.parents(entity_type, record):
                if not self._parent_settled(adapter, parent.entity_type, parent.entity_id):
                    return f"{parent.entity_type} {parent.entity_id}"
        return None

    def _parent_settled(self, adapter: RegistryAdapter, entity_type: str, entity_id: str) -> bool:
        key = (adapter.name, entity_type, entity_id)
        if key not in self._settled:
            self._settled[key] = self._compute(adapter, entity_type, entity_id)
        return self._settled[key]

    def _compute(self, adapter: RegistryAdapter, entity_type: str, entity_id: str) -> bool:
        rows = self.session.scalars(
            select(RegistryIdentity).where(
                RegistryIdentity.entity_type == entity_type,
                RegistryIdentity.entity_id == entity_id,
                RegistryIdentity.registry_name == adapter.name,
            )
        ).all()
        statuses = {r.external_entity_type: r.sync_status for r in rows}
        steps = adapter.entities[entity_type].external_types
        if all(statuses.get(s) in (SyncStatus.SYNCED, SyncStatus.DRIFTED) for s in steps):
            return True
        if any(status in (SyncStatus.ERROR, SyncStatus.UNKNOWN) for status in statuses.values()):
            return True  # failed: the child goes and fails with a message naming it
        parent = self.session.get(ENTITY_MODELS[entity_type], uuid.UUID(entity_id))
        return parent is None or not adapter.is_ready(entity_type, parent)  # not going yet: don't wait


def plan_tick(
    entity_type: str,
    cursor: str | None,
    database_url: str,
    has_partition: Any,
    all_partitions: Any,
    *,
    limit: int = DEFAULT_RECORDS_PER_TICK,
    now: datetime | None = None,
) -> tuple[list[str], list[list[str]], str | None, dict[str, Any]]:
    """(new partition keys, runs as lists of keys (contiguous ranges), new cursor, tick facts)."""
    now = now or datetime.now(UTC)
    settings = get_settings().model_copy(update={"dmrv_database_url": database_url})
    adapters = [
        build_rules(name, settings) for name, entities in REGISTRY_ENTITIES.items() if entity_type in entities
    ]
    start = position = Position.load(cursor)
    accepted: list[str] = []
    waiting: str | None = None
    try:
        with get_session_factory(database_url)() as session:
            records = changed_records(session, entity_type, position, limit)
            gate = ParentGate(session, adapters)
            for record in records:
                if any(adapter.is_ready(entity_type, record) for adapter in adapters):
                    blocker = gate.waiting_for(entity_type, record)
                    if blocker is not None and record.updated_at > now - MAX_PARENT_WAIT:
                        waiting = f"{entity_type} {record.id} waits for its parent {blocker}"
                        break
                    accepted.append(str(record.id))
                position = Position(record.updated_at, str(record.id))
    finally:
        for adapter in adapters:
            adapter.close()
    # Held unless they make half a run already (a tick reads at most `limit`, the waiting record included).
    if waiting and accepted and len(accepted) < max(1, min(PARTITIONS_PER_RUN, limit) // 2):
        since = held_since(cursor) or now
        if now - since < HOLD_FOR_PARENTS:  # hold: the cursor stays where it was
            waiting += f"; {len(accepted)} ready {entity_type} records held back to go in one run with it"
            facts = {"records": 0, "new": 0, "changed": 0, "waiting": waiting, "held": len(accepted)}
            return [], [], holding_cursor(start, since), facts
    # Past the records read, without any hold: a tick that ends a hold clears it.
    unique = list(dict.fromkeys(accepted))
    new_keys = [k for k in unique if not has_partition(k)]
    new = set(new_keys)
    changed = [k for k in unique if k not in new]
    runs = [new_keys[i : i + PARTITIONS_PER_RUN] for i in range(0, len(new_keys), PARTITIONS_PER_RUN)]
    if changed:
        runs += _ranges(changed, all_partitions())
    facts = {"records": len(accepted), "new": len(new_keys), "changed": len(changed), "waiting": waiting}
    return new_keys, runs, position.dump() if position else None, facts


def _ranges(keys: list[str], ordered: list[str]) -> list[list[str]]:
    """Changed keys grouped into contiguous ranges of the partition order (small gaps bridged)."""
    index = {k: i for i, k in enumerate(ordered)}
    positions = sorted(index[k] for k in keys if k in index)
    ranges: list[list[str]] = []
    start = previous = None
    for pos in positions:
        if start is None:
            start = previous = pos
            continue
        assert previous is not None
        if pos - previous > MAX_RANGE_GAP or pos - start >= PARTITIONS_PER_RUN:
            ranges.append(ordered[start : previous + 1])
            start = pos
        previous = pos
    if start is not None and previous is not None:
        ranges.append(ordered[start : previous + 1])
    return ranges


def range_run_request(entity_type: str, keys: list[str], version: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{entity_type}:{keys[0]}:{keys[-1]}:{len(keys)}@{version}",
        asset_selection=assets_for_entity_type(entity_type),
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
            "dmrv/entity_type": entity_type,
            "dmrv/entities": str(len(keys)),
        },
    )


def build_entity_sensor(entity_type: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{entity_type}_sensor",
        description=f"Pushes {entity_type} records that are ready for the registry (runs over ranges of partitions).",
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        target=assets_for_entity_type(entity_type),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def entity_sensor(
        context: dg.SensorEvaluationContext, dmrv_database: DmrvDatabase
    ) -> dg.SensorResult | dg.SkipReason:
        database = dmrv_database
        instance = context.instance
        # One read of the partitions per tick, when needed (one query per record took 15-40 ms each).
        known = functools.cache(lambda: set(instance.get_dynamic_partitions(entity_type)))
        new_keys, runs, cursor, facts = plan_tick(
            entity_type,
            context.cursor,
            database.database_url(),
            has_partition=lambda key: key in known(),
            all_partitions=lambda: instance.get_dynamic_partitions(entity_type),
        )
        if facts["waiting"]:
            context.log.info(facts["waiting"])
        if not runs:
            # With the cursor: it moved past records that are not ready (or carries a hold). A bare
            # SkipReason would keep the old one, and 1,000 not-ready records would be re-read forever.
            return dg.SensorResult(
                skip_reason=facts["waiting"] or f"no {entity_type} record ready since the last tick",
                cursor=cursor,
            )
        if new_keys:
            # Added here in one statement, not as a SensorResult's dynamic_partitions_requests: the daemon
            # checks those one key at a time, a query each (1,000 keys: ~3 s of a tick, py-spy). Added
            # before the runs are requested; if the tick then fails, the next one re-reads the same
            # records (the cursor did not move) and requests them as existing partitions.
            instance.add_dynamic_partitions(entity_type, new_keys)
            context.log.info(f"added {len(new_keys)} {entity_type} partitions")
        version = cursor or ""
        return dg.SensorResult(
            run_requests=[range_run_request(entity_type, keys, version) for keys in runs],
            cursor=cursor,
        )

    return entity_sensor


def build_entity_sensors() -> list[dg.SensorDefinition]:
    entity_types = {t for entities in REGISTRY_ENTITIES.values() for t in entities}
    return [build_entity_sensor(t) for t in ENTITY_PARTITIONS if t in entity_types]
