"""The training loop: train a backbone while applying a growth schedule.

:func:`train` is what ``growsearch train`` and every Ray Tune trial call. Epochs count from 0
everywhere (schedules, the log's ``epoch e (k/n epochs)`` lines, ``metrics.json``'s
``epochs[].epoch`` and ``best_epoch``, the reports). Per epoch ``e``
(0-based):

1. apply ``schedule.due(e)`` with a generator seeded from ``(seed, e)``; merge the
   surgery results; if anything changed, start a new *phase*: build the freeze policy
   (``all``/``new_only``/``new_units``) and rebuild the optimizer (``fresh``/``carry``) with the phase
   learning rate (``event.lr``, else the current one);
2. reset every RNG to a seed derived from ``(seed, e)`` and train one epoch (the train
   set's ``set_epoch(e)`` fixes the crops, a seeded DataLoader generator the order);
3. evaluate the dev EER (every ``eval_every`` epochs and after the last), keep the best
   checkpoint, write the resumable checkpoint atomically and call ``on_epoch``.

Because every epoch re-seeds from ``(seed, e)``, a run resumed from the checkpoint after
epoch ``e`` continues exactly as the uninterrupted run, and a run that loads a shared
prefix from the prefix cache is identical to one that trained it.

**Best checkpoint rule.** The checkpoint evaluated on eval is the one with the lowest dev
EER (first on ties) among the eligible epochs. With ``training.best_checkpoint: last_phase``
(the default) those are the epochs from the last event of the schedule on: a dropin run
reports its grown model, and a plasticity run (ending with a shrink) its last phase, as in
the paper's code, so the final model has the baseline's size. With ``any``, every epoch is
eligible unless the schedule ends with a shrink (then its last phase).

**Shared prefix.** The training state at the start of epoch ``e`` depends only on the
config (without its number of epochs), the seed and the growth events applied before ``e``,
so it is cached under that key (:func:`growsearch.train.state.prefix_key`) after every epoch
boundary and shared by every schedule that agrees with the writer's up to ``e``: the baseline
epochs, but also a grown phase that a dropin and a plasticity schedule with the same growth
have in common. A run starts from the longest prefix the cache holds. A prefix holds only
what does not depend on the rest of the writer's schedule: model, optimizer/freeze/
LR-scheduler/RNG states after epochs ``0..e-1``, their records, and ``window_best``, for
every window start ``w`` (0 and each event epoch before ``e``) the best of epochs
``w..e-1`` with *all* of them eligible. The writer's own ``best`` (which follows the writer's
rule) is not stored: each reading trial takes its ``best`` from the window its own rule
starts at (its eligible window always starts at 0 or at one of its event epochs, which are
the prefix's when they are before ``e``).

**Training FLOPs.** ``train_flops`` = sum over epochs of (samples seen x training FLOPs per
sample of the model size in that epoch); ``train_flops_scratch_final`` is the same number
for the final-size model (the architecture after the last epoch) trained for the same epochs
from scratch. ``params`` and ``flops`` are those of the best checkpoint (the model evaluated).

**Layout.** :func:`train` strings together the parts: :mod:`growsearch.train.setup` (device,
precision, the model and its pretrained weights), :mod:`growsearch.train.resume` (where the
run starts: resume, shared prefix or epoch 0; the checkpoints written after each epoch),
:mod:`growsearch.train.epoch` (the phase change at a growth epoch, the steps) and
:mod:`growsearch.train.bookkeeping` (dev evaluation and the best checkpoint, the records,
the final evaluation and ``metrics.json``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from growsearch.backbones import Backbone
from growsearch.schedule import GrowthSchedule
from growsearch.train import bookkeeping as bk
from growsearch.train import state as st
from growsearch.train.bookkeeping import NonFiniteLoss
from growsearch.train.config import TrainConfig
from growsearch.train.epoch import begin_epoch, train_epoch
from growsearch.train.evaluate import loss_fn
from growsearch.train.resume import Plan, RunState, plan, start_run, write_checkpoints
from growsearch.train.setup import build_model, resolve_amp, resolve_device
from growsearch.vocabulary import SAMPLE_RATE

__all__ = ["NonFiniteLoss", "TrainResult", "build_model", "resolve_amp", "resolve_device", "train"]

EpochHook = Callable[[dict[str, Any], Path], None]
#: Key set on the records ``on_epoch`` receives for epochs that were not trained by this call
#: (restored from a checkpoint or the shared prefix), before the first trained epoch.
RESTORED = "restored"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        status: ``ok`` (a ``nan`` run raises :class:`NonFiniteLoss` instead).
        metrics: the content of ``out_dir/metrics.json``.
        out_dir: where metrics, scores and checkpoints were written.
        model: the best checkpoint's model (on the training device, eval mode).
    """

    status: str
    metrics: dict[str, Any]
    out_dir: Path
    model: Backbone | None = field(default=None, repr=False)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the loop ------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    schedule: GrowthSchedule | None = None,
    *,
    out_dir: str | Path,
    on_epoch: EpochHook | None = None,
    resume: bool = True,
    prefix_cache: str | Path | None = None,
    log: Callable[[str], None] = _stderr,
    schedule_source: str = "schedule",
    resume_from: str | Path | None = None,
) -> TrainResult:
    """Train ``config``'s backbone on its data while applying ``schedule``.

    Args:
        config: the run's settings.
        schedule: growth schedule (``None``: ``config.schedule``, else no growth).
        out_dir: where ``metrics.json``, ``scores.txt``, ``best_model.pt`` and the resumable
            ``checkpoint/state.pt`` go.
        on_epoch: called as ``on_epoch(record, checkpoint_dir)`` after each epoch's
            checkpoint is written (``checkpoint_dir`` = ``out_dir/checkpoint``); first once
            for each epoch restored from a checkpoint or the shared prefix (the record then
            has ``restored: True``), so the caller sees every epoch's record.
        resume: continue from ``out_dir/checkpoint/state.pt`` if it exists.
        prefix_cache: folder of the shared-prefix cache (see :mod:`growsearch.train.prefix_cache`).
        log: where progress lines go (default: stderr).
        schedule_source: how schedule errors name the schedule (e.g. its file).
        resume_from: a ``state.pt`` or a folder holding one (e.g. a checkpoint Ray restored
            elsewhere) to continue from instead of ``out_dir/checkpoint``; ignored when
            missing. The run then goes on writing under ``out_dir``.

    Returns:
        :class:`TrainResult` with the metrics written to ``out_dir/metrics.json``.

    Raises:
        ScheduleError: the schedule does not fit the backbone or the number of epochs.
        ConfigError / DataError: bad settings or data.
        NonFiniteLoss: the loss became NaN/Inf (``metrics.json`` has ``status: nan``).
    """
    from growsearch.data.feature_cache import with_feature_cache
    from growsearch.data.splits import build_splits

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tc = config.training
    schedule = schedule if schedule is not None else (config.schedule or GrowthSchedule.empty())
    device = resolve_device(tc.device)
    amp_dtype = resolve_amp(tc.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    st.seed_all(config.seed)
    model = build_model(config)
    schedule.validate_for(model.growth_points(), tc.epochs, source=schedule_source)
    model.check_schedule(schedule, source=schedule_source)  # backbone-specific refusals, before any data
    splits = with_feature_cache(build_splits(config.data, config.seed), config.data, model.frontend, device, log)
    clip_s = config.data.clip_samples / SAMPLE_RATE
    p = plan(config, schedule, out, prefix_cache, log)

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        run, prefix_reused, p = start_run(p, model, config, schedule, device, scaler, resume=resume,
                                          resume_from=resume_from, out=out, log=log)
        prefix_flops = sum(r["train_flops_epoch"] for r in run.records[:prefix_reused])
        criterion = loss_fn(tc.loss)
        cost = bk.costs(run.model, clip_s)
        ctx = _Context(config, schedule, p, splits, device, amp_dtype, criterion, clip_s, out, log)
        if on_epoch is not None:  # epochs not trained here (a resumed checkpoint, a shared prefix): their records first
            for record in run.records:
                on_epoch({**record, RESTORED: True}, p.ckpt_file.parent)
        for epoch in range(run.epoch, tc.epochs):
            cost = _one_epoch(ctx, run, epoch, cost)
            write_checkpoints(p, run, prefix_reused)
            log(bk.epoch_line(run.records[-1], tc.epochs))
            if on_epoch is not None:
                on_epoch(run.records[-1], p.ckpt_file.parent)

        metrics, best_model = bk.finish(run, config, schedule, splits, device, amp_dtype, out, clip_s, log)
        metrics["prefix_epochs_reused"] = prefix_reused
        metrics["train_flops_saved"] = float(prefix_flops)
        metrics["prefix_wait_s"] = round(p.prefix_wait_s, 3)
        bk.write_json(out / "metrics.json", metrics)
        log(f"done: dev_eer {metrics['dev_eer']:.4f} eval_eer {metrics['eval_eer']:.4f} (best epoch {metrics['best_epoch']})")
        return TrainResult("ok", metrics, out, best_model)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        if p.claims is not None:  # finished, failed or stopped: nobody waits for what this run will not write
            p.claims.release_all()


@dataclass(frozen=True)
class _Context:
    """What every epoch of one :func:`train` call reads (fixed for the run)."""

    config: TrainConfig
    schedule: GrowthSchedule
    plan: Plan
    splits: Any
    device: torch.device
    amp_dtype: torch.dtype | None
    criterion: Callable[..., torch.Tensor]
    clip_s: float
    out: Path
    log: Callable[[str], None]


def _one_epoch(c: _Context, run: RunState, epoch: int, cost: dict[str, float]) -> dict[str, float]:
    """Epoch ``epoch``: growth events and a new phase if any are due, the steps, the dev
    evaluation when due, and the record appended to ``run.records`` (``run.epoch`` advances).

    Args:
        cost: the costs of the model size before this epoch's events.

    Returns:
        The costs of the model size after them.
    """
    tc = c.config.training
    t0 = time.perf_counter()
    events = c.schedule.due(epoch)
    if events:
        begin_epoch(run, events, tc, c.config.seed, epoch, c.device)
        cost = bk.costs(run.model, c.clip_s)
        c.log(f"epoch {epoch}: applied {', '.join(e.describe() for e in events)} -> {cost['params']} params")

    def nan_loss(batch: int, value: float) -> None:
        bk.fail_nan(c.out, run, c.schedule, c.config, epoch, batch, value, c.splits)

    stats = train_epoch(run, c.splits.train, tc, seed=c.config.seed, epoch=epoch, num_workers=c.config.data.num_workers,
                        device=c.device, amp_dtype=c.amp_dtype, criterion=c.criterion, on_nonfinite=nan_loss)
    dev_eer: float | None = None
    if (epoch + 1) % tc.eval_every == 0 or epoch == tc.epochs - 1:
        def nan_scores() -> None:
            bk.fail_nan(c.out, run, c.schedule, c.config, epoch, stats.batches, float("nan"), c.splits, what="dev scores")

        dev_eer = bk.evaluate_dev(run, c.splits.dev, c.config, epoch=epoch, eligible_from=c.plan.eligible_from,
                                  windows=c.plan.windows, device=c.device, amp_dtype=c.amp_dtype,
                                  on_nonfinite=nan_scores)
    run.records.append(bk.epoch_record(run, epoch, stats, dev_eer, cost, events, t0, c.device))
    run.epoch = epoch + 1
    return cost
