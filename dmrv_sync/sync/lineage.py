"""The pull path's only way to write entity tables: registry-owned fields, each change with a lineage row
(design invariant 8)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from dmrv_sync.db.base import utcnow
from dmrv_sync.db.sync_state import FieldLineage


def apply_registry_values(
    session: Session,
    entity_type: str,
    entity: Any,
    values: Mapping[str, Any],
    *,
    allowed_fields: frozenset[str],
    source: str,
    run_id: str | None,
) -> dict[str, tuple[Any, Any]]:
    """Set the fields whose value differs; returns {field: (previous, new)} for those changed."""
    changed: dict[str, tuple[Any, Any]] = {}
    for field, new in values.items():
        if field not in allowed_fields:
            raise PermissionError(
                f"{source} is not the authority for {entity_type}.{field}: the supplier owns it"
            )
        previous = getattr(entity, field)
        if _comparable(previous) == _comparable(new):
            continue
        setattr(entity, field, new)
        changed[field] = (previous, new)
        session.add(
            FieldLineage(
                entity_type=entity_type,
                entity_id=str(entity.id),
                field=field,
                previous_value=_text(previous),
                new_value=_text(new),
                source=source,
                run_id=run_id,
                changed_at=utcnow(),
            )
        )
    return changed


def _comparable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)
