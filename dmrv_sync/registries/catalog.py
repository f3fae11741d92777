"""The registries dmrv-sync can sync to. Adding one = an adapter package plus a line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dmrv_sync.settings import Settings
from dmrv_sync.sync.adapter import RegistryAdapter


def _isometric(settings: Settings, **client_options: Any) -> RegistryAdapter:
    from dmrv_sync.registries.isometric.adapter import IsometricAdapter
    from dmrv_sync.registries.isometric.client import IsometricClient
    from dmrv_sync.registries.isometric.rules import Limits

    return IsometricAdapter(
        IsometricClient.from_settings(settings, **client_options),
        template_id=settings.isometric_ghg_entry_template_id,
        limits=Limits.from_settings(settings),
    )


ADAPTERS: dict[str, Callable[..., RegistryAdapter]] = {"isometric": _isometric}


def build_adapter(name: str, settings: Settings, **client_options: Any) -> RegistryAdapter:
    try:
        factory = ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown registry {name!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    return factory(settings, **client_options)
