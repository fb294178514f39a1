"""Datasets, the generated corpus and the front-ends.

Public API::

    from growsearch.data import DataConfig, build_splits
    splits = build_splits(DataConfig(dataset="synthetic"), seed=42)
    wave, label, utt, attack = splits.train[0]   # (64600,) float32, 1 = bona fide
    splits.train.set_epoch(e)                    # new training crops per epoch

Only :class:`DataConfig` is imported eagerly; the rest (which needs torch) on first use, so
reading a config stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from growsearch.data.config import DataConfig

_LAZY = {"AsvFiles": "growsearch.data.dataset", "ClipDataset": "growsearch.data.dataset", "Item": "growsearch.data.dataset",
         "Splits": "growsearch.data.dataset", "build_splits": "growsearch.data.splits"}

__all__ = ["AsvFiles", "ClipDataset", "DataConfig", "Item", "Splits", "build_splits"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'growsearch.data' has no attribute {name!r}")
