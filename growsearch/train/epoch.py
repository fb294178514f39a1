"""One epoch of training: the phase change at a growth epoch, then the optimisation steps.

:func:`begin_epoch` applies the epoch's growth events (with a generator seeded from
``(seed, epoch)``) and starts a new phase: the freeze policy and the optimizer rebuilt with
the phase learning rate, and a new LR scheduler. :func:`train_epoch` re-seeds every RNG
from ``(seed, epoch)`` and runs the steps; it is what makes resume and prefix reuse exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from growsearch.backbones import Backbone
from growsearch.errors import ConfigError
from growsearch.growth.surgery import SurgeryResult
from growsearch.schedule import GrowthEvent
from growsearch.train import state as st
from growsearch.train.config import TrainingConfig
from growsearch.train.evaluate import autocast, iterate, make_loader
from growsearch.train.phase import current_lr, make_scheduler, snapshot, start_phase
from growsearch.train.resume import RunState

__all__ = ["EpochStats", "apply_events", "begin_epoch", "phase_settings", "train_epoch"]


@dataclass(frozen=True)
class EpochStats:
    """What one epoch's steps saw.

    Attributes:
        loss_sum: sum over samples of the training loss (float64 tensor on the device).
        samples: samples seen.
        batches: steps taken.
        train_s: seconds spent in the steps (after a CUDA synchronize).
    """

    loss_sum: torch.Tensor
    samples: int
    batches: int
    train_s: float


def apply_events(model: Backbone, events: tuple[GrowthEvent, ...], seed: int, epoch: int) -> list[SurgeryResult]:
    """Apply one epoch's events with a generator seeded from ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(st.epoch_seed(seed, epoch) ^ 0x5EED)
    return [model.apply_event(ev, generator=g) for ev in events]


def phase_settings(events: tuple[GrowthEvent, ...]) -> tuple[str, str, float | None]:
    """(freeze policy, optimizer mode, lr or None) shared by the events of one epoch."""
    lrs = [e.lr for e in events if e.lr is not None]
    return events[0].freeze, events[0].optimizer_state, (lrs[0] if lrs else None)


def begin_epoch(run: RunState, events: tuple[GrowthEvent, ...], tc: TrainingConfig, seed: int, epoch: int,
                device: torch.device) -> None:
    """Apply ``events`` (due at ``epoch``, not empty) to ``run.model`` and start a new phase.

    The new phase's LR is the events' ``lr`` if one sets it, else the current one; with
    ``carry`` the optimizer keeps the moments of the entries that survive the surgery.
    """
    snap = snapshot(run.phase.optimizer, run.model)
    results = apply_events(run.model, events, seed, epoch)
    run.model.to(device)
    policy, mode, ev_lr = phase_settings(events)
    lr = ev_lr if ev_lr is not None else current_lr(run.phase)
    run.phase = start_phase(run.model, results=results, policy=policy, optimizer_name=tc.optimizer, lr=lr,
                            weight_decay=tc.weight_decay, mode=mode, snap=snap, start_epoch=epoch,
                            extra_trainable=tc.freeze_extra_trainable)
    run.scheduler = make_scheduler(tc.scheduler, run.phase.optimizer)


def train_epoch(run: RunState, train_set: Any, tc: TrainingConfig, *, seed: int, epoch: int, num_workers: int,
                device: torch.device, amp_dtype: torch.dtype | None, criterion: Callable[..., torch.Tensor],
                on_nonfinite: Callable[[int, float], None]) -> EpochStats:
    """Re-seed every RNG from ``(seed, epoch)`` and train ``run.model`` for one epoch.

    Args:
        train_set: the training dataset (``set_epoch(epoch)`` fixes its crops, if it has one).
        on_nonfinite: called as ``on_nonfinite(batch, loss)`` when the loss is NaN/Inf
            (it raises).

    Raises:
        ConfigError: the training set produced no batches.
    """
    st.seed_all(st.epoch_seed(seed, epoch))
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    loader = make_loader(train_set, batch_size=tc.batch_size, shuffle=True, seed=st.epoch_seed(seed, epoch) % 2**62,
                         num_workers=num_workers, pin=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_seen = 0
    n_batches = 0
    t_train = time.perf_counter()
    for b, (wave, label, _u, _a) in iterate(loader, tc.max_batches_per_epoch):
        wave = wave.to(device, non_blocking=True)
        label = label.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = run.model(wave)
        loss = criterion(logits.float(), label)
        if not bool(torch.isfinite(loss)):
            on_nonfinite(b, float(loss.detach()))
        _step(run, loss, tc.grad_clip)
        loss_sum += loss.detach().double() * wave.shape[0]
        n_seen += int(wave.shape[0])
        n_batches += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - t_train
    if n_seen == 0:
        raise ConfigError("training set produced no batches")
    return EpochStats(loss_sum, n_seen, n_batches, train_s)


def _step(run: RunState, loss: torch.Tensor, grad_clip: float | None) -> None:
    """One optimiser step on ``loss``: backward (scaled with a GradScaler), the freeze
    policy's gradient masks, optional clipping of the trainable parameters, step."""
    opt = run.phase.optimizer
    opt.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(opt)
    else:
        loss.backward()
    run.phase.freeze.before_step()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_([p for _, p in run.phase.freeze.trainable_named_parameters()], grad_clip)
    if run.scaler is not None:
        run.scaler.step(opt)
        run.scaler.update()
    else:
        opt.step()
    run.phase.freeze.after_step()
