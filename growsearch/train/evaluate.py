"""Losses, data loaders and scoring a model on a split.

Scores follow the project convention: ``score = logit[1] - logit[0]`` (higher = more bona
fide; label 1 = bona fide).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from growsearch.errors import GrowsearchError

__all__ = ["Scored", "autocast", "iterate", "loss_fn", "make_loader", "score_split", "worker_message"]


def loss_fn(name: str) -> nn.Module:
    """``ce``: cross-entropy; ``hinge``: ``nn.MultiMarginLoss(margin=1)`` on the 2 logits,
    i.e. ``max(0, 1 - (s_y - s_other)) / 2`` per sample, averaged over the batch."""
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "hinge":
        return nn.MultiMarginLoss(p=1, margin=1.0)
    raise ValueError(f"unknown loss {name!r}; valid: ce, hinge")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA with ``dtype`` (bf16/fp16); a no-op otherwise."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    s = int(info.seed) if info is not None else worker_id  # derived from the loader's generator
    random.seed(s)
    np.random.seed(s % 2**32)


def make_loader(ds: Dataset, *, batch_size: int, shuffle: bool, seed: int, num_workers: int, pin: bool) -> DataLoader:
    """A DataLoader whose order and worker seeds depend only on ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        num_workers=num_workers,
        worker_init_fn=_worker_init,
        pin_memory=pin,
        drop_last=False,
        collate_fn=collate,
    )


def collate(items: list[tuple[Any, ...]]) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """``[(wave, label, utt_id, attack), ...]`` -> ``(waves (B, L) float32, labels (B,), utts, attacks)``."""
    waves = torch.stack([torch.as_tensor(it[0], dtype=torch.float32) for it in items])
    labels = torch.as_tensor([int(it[1]) for it in items], dtype=torch.long)
    return waves, labels, [str(it[2]) for it in items], [str(it[3]) for it in items]


@dataclass
class Scored:
    """Scores of one split: ``scores`` ``(N,)`` float64, ``labels`` ``(N,)`` (1 = bona fide)."""

    scores: np.ndarray
    labels: np.ndarray
    utts: list[str]
    attacks: list[str]

    @property
    def bona(self) -> np.ndarray:
        return self.scores[self.labels == 1]

    @property
    def spoof(self) -> np.ndarray:
        return self.scores[self.labels == 0]


def iterate(loader: DataLoader, max_batches: int | None) -> Iterator[tuple[int, Any]]:
    """``(index, batch)`` of ``loader``, at most ``max_batches``.

    A :class:`~growsearch.errors.GrowsearchError` raised in a DataLoader worker process
    reaches the caller as the same exception with the same one-line message as without
    workers (PyTorch re-raises it with the worker's whole traceback as its message).
    """
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            yield i, batch
    except GrowsearchError as exc:
        original = worker_message(exc)
        if original is None:
            raise
        raise type(exc)(original) from None


def worker_message(exc: BaseException) -> str | None:
    """The original message of ``exc`` when PyTorch re-raised it from a DataLoader worker
    (``Caught X in DataLoader worker process N. Original Traceback ...``), else None."""
    text = str(exc)
    if "DataLoader worker process" not in text or "Original Traceback" not in text:
        return None
    cls = type(exc)
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        at = text.rfind("\n" + prefix)
        if at >= 0:
            return text[at + 1 + len(prefix):].strip()
    return None


@torch.no_grad()
def score_split(
    model: nn.Module,
    ds: Dataset,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_size: int,
    num_workers: int = 0,
    max_batches: int | None = None,
) -> Scored:
    """Score every item of ``ds`` (in order) with ``model`` in eval mode.

    Returns:
        :class:`Scored` with ``score = logit[1] - logit[0]`` computed in float32.
    """
    was_training = model.training
    model.eval()
    loader = make_loader(ds, batch_size=batch_size, shuffle=False, seed=0, num_workers=num_workers, pin=device.type == "cuda")
    scores, labels, utts, attacks = [], [], [], []
    try:
        for _, (wave, label, utt, attack) in iterate(loader, max_batches):
            with autocast(device, amp_dtype):
                logits = model(wave.to(device, non_blocking=True))
            logits = logits.float()
            scores.append((logits[:, 1] - logits[:, 0]).cpu().double())
            labels.append(label)
            utts.extend(utt)
            attacks.extend(attack)
    finally:
        model.train(was_training)
    return Scored(torch.cat(scores).numpy(), torch.cat(labels).numpy(), utts, attacks)
