"""What a registry adapter declares and does. The engine (engine.py) knows nothing else of registries.

An adapter says, for each local entity type, which external objects stand for it (ordered steps), which
local entities must be in the registry first (parents), when a record is ready to go, how it is
validated, and how each step's payload is built, sent, found again and updated.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session


class Capability(enum.StrEnum):
    CREATE = "create"  # POST a new object (reconciled by reference or natural key after an unknown outcome)
    LINK = "link"  # the API cannot create it: a user records the ID (dmrv-sync link ...)
    LOOKUP = "lookup"  # the API cannot create it: it is found by its reference
    SUBMIT = "submit"  # an action on the previous step's object (e.g. submit a statement)


@dataclass(frozen=True)
class StepSpec:
    external_entity_type: str
    capability: Capability
    updatable: bool = False  # a synced object whose payload changed can be updated in place (PATCH)
    drift_advice: str = ""  # what to do when it changed and cannot be updated


@dataclass(frozen=True)
class EntitySpec:
    entity_type: str  # local type, as in registry_identities.entity_type
    asset_name: str  # the Dagster asset's name under the registry's prefix
    steps: tuple[StepSpec, ...]
    parent_types: tuple[str, ...] = ()
    # When set, entities of this type are synced one at a time in the order of this attribute (for
    # registries where one entity's object depends on which others exist, e.g. period-based statements).
    sequential_by: str | None = None
    # With sequential_by: the one step that must go in that order. The steps before it go ahead for the
    # whole selection at once and the steps after it follow concurrently (SyncEngine._sync_pipelined).
    # None: every step of an entity waits for the entity before it.
    ordered_step: str | None = None

    def step(self, external_entity_type: str) -> StepSpec:
        for step in self.steps:
            if step.external_entity_type == external_entity_type:
                return step
        raise KeyError(f"{self.entity_type} has no step {external_entity_type!r}")

    @property
    def external_types(self) -> tuple[str, ...]:
        return tuple(step.external_entity_type for step in self.steps)


class Severity(enum.StrEnum):
    ERROR = "error"  # blocks the entity: no request is made
    WARNING = "warning"  # recorded and shown; the entity goes through


@dataclass(frozen=True)
class Issue:
    severity: Severity
    entity_type: str
    entity_id: str
    field: str
    value: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.entity_type} {self.entity_id}: {self.field} = {_show(self.value)}: {self.rule}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class ParentRef:
    entity_type: str
    entity_id: str


class ExternalIds:
    """Read access to what is already in the registry: parents' and earlier steps' external IDs."""

    def __init__(
        self,
        lookup: Callable[[str, str, str], str | None],
        lookup_many: Callable[[str, Sequence[str], Sequence[str]], dict[str, dict[str, str]]],
    ) -> None:
        self._lookup = lookup
        self._lookup_many = lookup_many

    def get(self, entity_type: str, entity_id: str, external_entity_type: str) -> str | None:
        return self._lookup(entity_type, str(entity_id), external_entity_type)

    def get_many(
        self, entity_type: str, entity_ids: Sequence[str], external_entity_types: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        """{entity ID: {external type: external ID}} of those of `entity_ids` that have any of the types
        in the registry (one query, where `get` is one each)."""
        return self._lookup_many(entity_type, [str(i) for i in entity_ids], external_entity_types)


@dataclass
class StepContext:
    """Everything an adapter needs to build and send one step."""

    entity_type: str
    entity_id: str
    entity: Any  # the ORM object, loaded in `session`
    session: Session
    step: StepSpec
    reference: str  # the supplier_reference_id for this step's object
    external_ids: ExternalIds
    identity_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepOutcome:
    external_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Confirmation:
    """What a registry now says about one local entity: the registry-owned values to hold locally, and,
    when the verdict needs the user (e.g. failed verification), an error for the step it concerns."""

    entity_type: str
    entity_id: str
    values: dict[str, Any]
    source: str  # e.g. "isometric:ghg_statement:ggs_..."
    error: str | None = None
    error_step: str | None = None


class MissingExternalId(LookupError):
    """A payload needs the external ID of something not yet in the registry (only in plans)."""


def supplier_reference(external_entity_type: str, entity_id: str) -> str:
    """The registry-side reference of one external object: derived from the identity, so it is the same
    on every retry and every machine (design invariant 1)."""
    return f"dmrv:{external_entity_type}:{entity_id}"


def payload_hash(payload: Mapping[str, Any] | None) -> str | None:
    if payload is None:
        return None
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class RegistryAdapter(ABC):
    """One registry. Subclasses are registered in `dmrv_sync.registries.catalog.ADAPTERS`."""

    name: str
    entities: Mapping[str, EntitySpec]

    @abstractmethod
    def is_ready(self, entity_type: str, entity: Any) -> bool:
        """Whether the record is complete enough to go to the registry (the trigger table)."""

    @abstractmethod
    def parents(self, entity_type: str, entity: Any) -> list[ParentRef]:
        """Local entities that must be fully synced first."""

    @abstractmethod
    def validate(self, entity_type: str, entity: Any, today: datetime) -> list[Issue]:
        """Every problem with the record, before any request."""

    @abstractmethod
    def build_payload(self, ctx: StepContext) -> dict[str, Any] | None:
        """The exact JSON body the step sends (None when the step sends nothing, e.g. a link).

        Raises MissingExternalId when a parent's or earlier step's object is not in the registry yet.
        """

    @abstractmethod
    def execute(self, ctx: StepContext, payload: dict[str, Any] | None) -> StepOutcome:
        """Create / look up / submit. Raises dmrv_sync.registries.errors.RegistryError subclasses."""

    @abstractmethod
    def reconcile(
        self, ctx: StepContext, payload: dict[str, Any] | None, unsettled_since: datetime
    ) -> StepOutcome | None:
        """Find the object an earlier attempt may have created (by reference or natural key), or None.

        The lookup must reflect the registry as of after `unsettled_since`; adapters may answer many
        entities from one listing pass taken after that moment.
        """

    # Local fields the registry is the authority for, per entity type (all others belong to the supplier).
    registry_owned_fields: Mapping[str, frozenset[str]] = {}

    def pull_confirmations(self, session: Session, synced: Mapping[str, str]) -> list[Confirmation]:
        """Read the registry's verdict for entities whose final step is synced.

        `synced` maps local entity id -> the external id of that entity type's confirmable object.
        """
        return []

    def confirmable(self) -> tuple[str, str] | None:
        """(local entity type, external type) whose objects confirmation pulls read, if any."""
        return None

    def update(self, ctx: StepContext, external_id: str, payload: dict[str, Any]) -> StepOutcome:
        raise NotImplementedError(f"{self.name}: {ctx.step.external_entity_type} cannot be updated")

    def fetch(self, ctx: StepContext, external_id: str) -> dict[str, Any] | None:
        """The registry's current object, for plans (None when the registry cannot be read)."""
        return None

    def web_url(self, external_entity_type: str, external_id: str) -> str | None:
        """A link to the object in the registry's web app, for the UI."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the adapter's clients."""
