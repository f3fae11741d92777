"""The registries dmrv-sync can sync to. Adding one = an adapter package plus a line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dmrv_sync.settings import Settings
from dmrv_sync.sync.adapter import EntitySpec, RegistryAdapter


def _isometric(settings: Settings, *, with_client: bool = True, **client_options: Any) -> RegistryAdapter:
    from dmrv_sync.registries.isometric.adapter import IsometricAdapter
    from dmrv_sync.registries.isometric.client import IsometricClient
    from dmrv_sync.registries.isometric.rules import Limits

    return IsometricAdapter(
        IsometricClient.from_settings(settings, **client_options) if with_client else None,
        template_id=settings.isometric_ghg_entry_template_id,
        template_inputs=settings.isometric_template_inputs,
        project_id=settings.isometric_project_id,
        limits=Limits.from_settings(settings),
    )


ADAPTERS: dict[str, Callable[..., RegistryAdapter]] = {"isometric": _isometric}


def _isometric_entities() -> Mapping[str, EntitySpec]:
    from dmrv_sync.registries.isometric.adapter import ENTITIES

    return ENTITIES


# What each registry maps each local entity type to: what the Dagster assets are generated from.
REGISTRY_ENTITIES: dict[str, Mapping[str, EntitySpec]] = {"isometric": _isometric_entities()}


def build_rules(name: str, settings: Settings) -> RegistryAdapter:
    """The adapter without a registry client: readiness, parents and validation, no calls (sensors)."""
    return build_adapter(name, settings, with_client=False)


def build_adapter(name: str, settings: Settings, **client_options: Any) -> RegistryAdapter:
    try:
        factory = ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown registry {name!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    return factory(settings, **client_options)
