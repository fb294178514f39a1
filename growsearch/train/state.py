"""Training state on disk: the resumable checkpoint and the shared-prefix cache.

One file, ``checkpoint/state.pt``, holds everything needed to continue a run exactly. It is
a :mod:`growsearch.backbones.checkpoint` model checkpoint (spec, the growth events applied so
far, weights; written atomically, read with ``weights_only=True``) whose ``extra`` holds the
phase (optimizer and freeze-policy states), LR-scheduler and GradScaler states, the RNG
states, the next epoch to train, the per-epoch records, the best checkpoint so far (events +
weights) and the running training-FLOPs count. A run killed while saving keeps the previous
checkpoint.

The prefix cache (:mod:`growsearch.train.prefix_cache`) stores the same payload for the
state at the start of an epoch ``e``, keyed by everything that determines training up to
there (see :func:`prefix_key`: data, model, training settings, seed, ``e`` and the growth
events applied before ``e``), minus what depends on the writer's whole schedule: its
``best`` is left out (``None``) and its ``run_key`` is ``prefix:<key>``. Instead,
``window_best`` holds, for every window start ``w`` (epoch 0 and each event epoch before
``e``), the best epoch of ``w..e-1`` with every one of them eligible, from which each reading
trial derives its own best with its own rule (see :mod:`growsearch.train.loop`). Every other
stored state (model, optimizer, freeze policy, LR scheduler, RNG, records) is the same for
every schedule with the same events before ``e``: nothing before ``e`` reads later events or
the number of epochs (the run's last epoch, always evaluated, is never inside a prefix).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from growsearch import __version__

__all__ = [
    "CHECKPOINT_DIR",
    "STATE_FILE",
    "epoch_seed",
    "get_rng_state",
    "config_key",
    "prefix_key",
    "seed_all",
    "set_rng_state",
]

#: Sub-folder of ``out_dir`` holding the resumable checkpoint (reported to Ray).
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
#: 2: the prefix stores ``prefix_best`` (all prefix epochs eligible), not the writer's ``best``.
#: 3: prefixes at any epoch, keyed by the events applied before it; ``window_best`` (the best
#: of epochs ``w..`` for every phase start ``w``) replaces ``prefix_best``.
STATE_FORMAT = 3
#: The format the run key (:func:`config_key`) is spelled with, fixed so old checkpoints resume.
_RUN_KEY_FORMAT = 2


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


def _key_payload(config_dict: dict[str, Any], fmt: int, epoch: int) -> dict[str, Any]:
    training = dict(config_dict["training"])
    training.pop("epochs", None)
    return {
        "format": fmt,
        "growsearch": __version__,
        "torch": torch.__version__,
        "seed": config_dict["seed"],
        "data": config_dict["data"],
        "model": config_dict["model"],
        "training": training,
        "epoch": int(epoch),
    }


def config_key(config_dict: dict[str, Any]) -> str:
    """The config part of a run's resume key (:func:`growsearch.train.resume.run_key`).

    Spelled as checkpoints made with state format 2 spelled it, so that they still resume.
    """
    return hashlib.sha256(_canonical(_key_payload(config_dict, _RUN_KEY_FORMAT, -1)).encode()).hexdigest()


def prefix_key(config_dict: dict[str, Any], epoch: int, events: Sequence[Mapping[str, Any]]) -> str:
    """The cache key of the training state at the start of ``epoch`` (after epochs ``0..epoch-1``).

    That state depends only on the data, the model, the training settings (except the number
    of epochs, which nothing before the run's last epoch reads), the seed, the epoch and the
    growth events applied before it (``events``: every event with ``epoch`` < ``epoch``, as
    :meth:`GrowthSchedule.to_dict` spells them); the rest of the schedule is left out, so
    schedules that agree up to ``epoch`` share the key. The package and torch versions are
    included so a changed growsearch never reuses an old state.

    Args:
        config_dict: :meth:`TrainConfig.identity() <growsearch.train.config.TrainConfig.identity>`.
        epoch: the epoch the state starts (> 0).
        events: the events applied before ``epoch``, in schedule order.
    """
    payload = _key_payload(config_dict, STATE_FORMAT, epoch)
    payload["events"] = [dict(e) for e in events]
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()
