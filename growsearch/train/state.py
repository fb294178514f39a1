"""Training state on disk: the resumable checkpoint and the shared-prefix cache.

One file, ``checkpoint/state.pt``, holds everything needed to continue a run exactly. It is
a :mod:`growsearch.backbones.checkpoint` model checkpoint (spec, the growth events applied so
far, weights; written atomically, read with ``weights_only=True``) whose ``extra`` holds the
phase (optimizer and freeze-policy states), LR-scheduler and GradScaler states, the RNG
states, the next epoch to train, the per-epoch records, the best checkpoint so far (events +
weights) and the running training-FLOPs count. A run killed while saving keeps the previous
checkpoint.

The prefix cache stores the same payload under ``DIR/<key>/state.pt`` where the key hashes
everything that determines training before the first growth epoch (see :func:`prefix_key`),
minus what depends on the writer's schedule: its ``best`` is left out (``None``) and its
``run_key`` is ``prefix:<key>``. Instead, ``prefix_best`` holds the best prefix epoch with
every prefix epoch eligible, from which each reading trial derives its own best with its own
rule (see :mod:`growsearch.train.loop`). Every other stored state (optimizer, freeze policy
``all``, LR scheduler, RNG, records) is the same for every schedule whose first growth is at
that epoch: nothing before it reads the schedule or the number of epochs (the last epoch,
always evaluated, is after the first growth).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growsearch import __version__

__all__ = [
    "CHECKPOINT_DIR",
    "STATE_FILE",
    "epoch_seed",
    "get_rng_state",
    "prefix_key",
    "prefix_path",
    "seed_all",
    "set_rng_state",
]

#: Sub-folder of ``out_dir`` holding the resumable checkpoint (reported to Ray).
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
#: 2: the prefix stores ``prefix_best`` (all prefix epochs eligible), not the writer's ``best``.
STATE_FORMAT = 2


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed every RNG is reset to at the start of ``epoch`` (so resume is exact)."""
    h = hashlib.sha256(f"growsearch-epoch:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(h[:7], "little")


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """The global RNG states as tensors/lists (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": [py[0], list(py[1]), py[2]],
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def prefix_key(config_dict: dict[str, Any], first_epoch: int) -> str:
    """The cache key of the training state at the start of ``first_epoch``.

    Before the first growth event, training depends only on the data, the model, the
    training settings (except the number of epochs, which nothing before that epoch reads),
    the seed and the epoch itself; the schedule is left out. The package version is
    included so a changed growsearch never reuses an old prefix.

    Args:
        config_dict: :meth:`TrainConfig.identity() <growsearch.train.config.TrainConfig.identity>`.
        first_epoch: epoch of the first growth event (> 0).
    """
    training = dict(config_dict["training"])
    training.pop("epochs", None)
    payload = {
        "format": STATE_FORMAT,
        "growsearch": __version__,
        "torch": torch.__version__,
        "seed": config_dict["seed"],
        "data": config_dict["data"],
        "model": config_dict["model"],
        "training": training,
        "epoch": int(first_epoch),
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def prefix_path(cache_dir: str | Path, key: str) -> Path:
    """Where the prefix state of ``key`` lives: ``cache_dir/<key>/state.pt``."""
    return Path(cache_dir) / key / STATE_FILE
