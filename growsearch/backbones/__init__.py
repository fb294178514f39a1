"""Growable backbones. Importing this package registers all of them."""

from __future__ import annotations

# Each module registers its backbone(s) on import.
from growsearch.backbones import lcgrnn as _lcgrnn  # noqa: F401
from growsearch.backbones import lora as _lora  # noqa: F401
from growsearch.backbones import resnet as _resnet  # noqa: F401
from growsearch.backbones import wav2vec2 as _wav2vec2  # noqa: F401
from growsearch.backbones import wav2vec2_widen as _wav2vec2_widen  # noqa: F401
from growsearch.backbones.base import Backbone, BackboneSpec, GrowthPoint
from growsearch.backbones.registry import (
    backbone_presets,
    create_backbone,
    create_from_spec,
    list_backbones,
    register_backbone,
)

__all__ = [
    "Backbone",
    "BackboneSpec",
    "GrowthPoint",
    "backbone_presets",
    "create_backbone",
    "create_from_spec",
    "list_backbones",
    "register_backbone",
]
