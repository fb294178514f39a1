"""Training: the config (:class:`TrainConfig`), the loop (:func:`train`), checkpoints and the
shared-prefix cache.

    from growsearch.train import load_train_config, train
    result = train(load_train_config("configs/smoke.yaml"), schedule, out_dir="runs/x")
"""

from __future__ import annotations

from growsearch.train.config import ModelConfig, TrainConfig, TrainingConfig, load_train_config
from growsearch.train.loop import NonFiniteLoss, TrainResult, train

__all__ = ["ModelConfig", "NonFiniteLoss", "TrainConfig", "TrainResult", "TrainingConfig", "load_train_config", "train"]
