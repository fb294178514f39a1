"""The backbone registry: explicit names, presets, ``create_backbone``.

Register a factory with :func:`register_backbone`; the contract tests in
``tests/test_backbone_contract.py`` are parametrised over :func:`list_backbones`, so a newly
registered backbone is covered at once. Every backbone must have a ``tiny`` preset that
builds and runs in well under a second on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from growsearch.backbones.base import Backbone, BackboneSpec
from growsearch.errors import ConfigError


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    factory: Callable[..., Backbone]
    presets: dict[str, dict[str, Any]]
    default_preset: str
    description: str = ""
    tags: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(
    name: str,
    *,
    presets: dict[str, dict[str, Any]],
    default_preset: str,
    description: str = "",
) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator registering ``factory(**kwargs) -> Backbone`` under ``name``.

    Raises:
        ValueError: the name is taken, or the default preset is not among the presets.
    """

    def deco(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        if default_preset not in presets:
            raise ValueError(f"backbone {name!r}: default preset {default_preset!r} not in {sorted(presets)}")
        if "tiny" not in presets:
            raise ValueError(f"backbone {name!r}: every backbone needs a 'tiny' preset for tests")
        _REGISTRY[name] = BackboneEntry(name, factory, presets, default_preset, description)
        return factory

    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> BackboneEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(list_backbones())}")
    return _REGISTRY[name]


def backbone_presets(name: str) -> dict[str, dict[str, Any]]:
    return dict(get_entry(name).presets)


def create_backbone(name: str, preset: str | None = None, **overrides: Any) -> Backbone:
    """Build a backbone by registry name and preset, with keyword overrides.

    Raises:
        ConfigError: unknown backbone, preset or keyword (each listing the valid ones).
    """
    entry = get_entry(name)
    preset = preset or entry.default_preset
    if preset not in entry.presets:
        raise ConfigError(f"backbone {name!r} has no preset {preset!r}; valid presets: {', '.join(sorted(entry.presets))}")
    kwargs = {**entry.presets[preset], **overrides}
    try:
        model = entry.factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"backbone {name!r}: bad option: {exc}") from None
    model.spec = BackboneSpec(name, preset, dict(overrides))
    return model


def create_from_spec(spec: dict[str, Any] | BackboneSpec) -> Backbone:
    if isinstance(spec, BackboneSpec):
        spec = spec.to_dict()
    return create_backbone(spec["name"], spec.get("preset"), **dict(spec.get("overrides") or {}))
