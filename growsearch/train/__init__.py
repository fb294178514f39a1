"""Training: the config (:class:`TrainConfig`), the loop (:func:`train`), checkpoints and the
shared-prefix cache.

    from growsearch.train import load_train_config, train
    result = train(load_train_config("configs/smoke.yaml"), schedule, out_dir="runs/x")

The config is imported eagerly; the loop (which needs torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from growsearch.train.config import ModelConfig, TrainConfig, TrainingConfig, load_train_config

__all__ = ["ModelConfig", "NonFiniteLoss", "TrainConfig", "TrainResult", "TrainingConfig", "load_train_config", "train"]

_LAZY = ("NonFiniteLoss", "TrainResult", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("growsearch.train.loop"), name)
    raise AttributeError(f"module 'growsearch.train' has no attribute {name!r}")
