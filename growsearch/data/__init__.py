"""Datasets, the generated corpus and the front-ends.

Public API::

    from growsearch.data import DataConfig, build_splits
    splits = build_splits(DataConfig(dataset="synthetic"), seed=42)
    wave, label, utt, attack = splits.train[0]   # (64600,) float32, 1 = bona fide
    splits.train.set_epoch(e)                    # new training crops per epoch
"""

from __future__ import annotations

from growsearch.data.config import DataConfig
from growsearch.data.dataset import AsvFiles, ClipDataset, Item, Splits
from growsearch.data.splits import build_splits

__all__ = ["AsvFiles", "ClipDataset", "DataConfig", "Item", "Splits", "build_splits"]
