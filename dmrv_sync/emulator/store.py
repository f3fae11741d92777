"""The emulator's objects: in memory, optionally written through to a SQLite file.

Each object is a JSON record (the response fields plus a few internal ones, e.g. a GHG entry's
project and template), kept per resource in creation order: a global sequence number orders them,
and list cursors point at it, so paging stays stable while objects are added or deleted.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = dict[str, Any]

ID_PREFIXES: dict[str, str] = {
    "feedstock_types": "ftt",
    "production_batches": "ptb",
    "storage_locations": "slc",
    "biochar_applications": "bse",
    "datapoints": "dtp",
    "ghg_entries": "rmv",
    "ghg_statements": "ggs",
}
# Feedstock types are provisioning (the web app creates them): a reset keeps them.
PROVISIONED_RESOURCES = ("feedstock_types",)
CREATED_RESOURCES = tuple(r for r in ID_PREFIXES if r not in PROVISIONED_RESOURCES)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """prefix + "_" + 16 Crockford base32 characters: 20 characters, inside the spec's 20..37."""
    return f"{prefix}_1" + "".join(secrets.choice(_CROCKFORD) for _ in range(15))


class Store:
    def __init__(self, state_path: Path | None = None) -> None:
        # Re-entrant: handlers hold it across check-then-write sequences (reference checks, statements).
        self.lock = threading.RLock()
        self._objects: dict[str, dict[str, Record]] = {resource: {} for resource in ID_PREFIXES}
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        if state_path is not None:
            self._open(state_path)

    def _open(self, state_path: Path) -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, resource TEXT NOT NULL,"
            " seq INTEGER NOT NULL, body TEXT NOT NULL)"
        )
        for object_id, resource, seq, body in self._db.execute(
            "SELECT id, resource, seq, body FROM objects ORDER BY seq"
        ):
            if resource in self._objects:
                self._objects[resource][object_id] = json.loads(body)
                self._seq = max(self._seq, seq)

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _persist(self, resource: str, record: Record) -> None:
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (id, resource, seq, body) VALUES (?, ?, ?, ?)",
                (record["id"], resource, record["seq"], json.dumps(record)),
            )

    def insert(self, resource: str, record: Record, object_id: str | None = None) -> Record:
        """Store a new object; gives it an id (unless provisioned with one) and the next sequence number."""
        with self.lock:
            if object_id is None:
                object_id = new_id(ID_PREFIXES[resource])
                while object_id in self._objects[resource]:
                    object_id = new_id(ID_PREFIXES[resource])
            self._seq += 1
            stored = {"id": object_id, **record, "seq": self._seq}
            self._objects[resource][object_id] = stored
            self._persist(resource, stored)
            return dict(stored)

    def update(self, resource: str, record: Record) -> Record:
        with self.lock:
            self._objects[resource][record["id"]] = dict(record)
            self._persist(resource, record)
            return dict(record)

    def delete(self, resource: str, object_id: str) -> None:
        with self.lock:
            self._objects[resource].pop(object_id, None)
            if self._db is not None:
                self._db.execute("DELETE FROM objects WHERE id = ?", (object_id,))

    def get(self, resource: str, object_id: str) -> Record | None:
        with self.lock:
            record = self._objects[resource].get(object_id)
            return None if record is None else dict(record)

    def list(self, resource: str, where: Callable[[Record], bool] | None = None) -> list[Record]:
        """Objects in creation order (dicts keep insertion order and updates keep the position)."""
        with self.lock:
            return [dict(r) for r in self._objects[resource].values() if where is None or where(r)]

    def clear_created(self) -> None:
        """Forget every object the API created; provisioned ones stay."""
        with self.lock:
            for resource in CREATED_RESOURCES:
                self._objects[resource].clear()
            if self._db is not None:
                marks = ",".join("?" for _ in CREATED_RESOURCES)
                self._db.execute(f"DELETE FROM objects WHERE resource IN ({marks})", CREATED_RESOURCES)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {resource: len(objects) for resource, objects in self._objects.items()}

    def duplicate_supplier_reference_ids(self) -> dict[str, int]:
        """Per resource, how many supplier_reference_ids occur on more than one current object;
        GHG statements have none, so there the key is their natural key (project, end date)."""
        with self.lock:
            result: dict[str, int] = {}
            for resource, objects in self._objects.items():
                if resource == "ghg_statements":
                    keys = [f"{r['project_id']}/{r['reporting_period_end_at']}" for r in objects.values()]
                else:
                    keys = [
                        r["supplier_reference_id"] for r in objects.values() if r.get("supplier_reference_id")
                    ]
                result[resource] = sum(1 for n in Counter(keys).values() if n > 1)
            result["total"] = sum(result.values())
            return result
