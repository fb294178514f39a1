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

**Shared prefix.** The prefix file holds only what does not depend on the schedule that
wrote it: model, optimizer/freeze/LR-scheduler/RNG states after epochs ``0..e-1``, their
records, and ``prefix_best``, the best of those epochs with *all* of them eligible. The
writer's own ``best`` (which follows the writer's rule) is not stored: each reading trial
derives its ``best`` from ``prefix_best`` with its own rule (all prefix epochs eligible, or,
with a final shrink, none: a shrink always comes after the first growth). A trial whose
eligible window would start inside the prefix neither reads nor writes it.

**Training FLOPs.** ``train_flops`` = sum over epochs of (samples seen x training FLOPs per
sample of the model size in that epoch); ``train_flops_scratch_final`` is the same number
for the final-size model (the architecture after the last epoch) trained for the same epochs
from scratch. ``params`` and ``flops`` are those of the best checkpoint (the model evaluated).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from growsearch.atomic import atomic_write_text
from growsearch.backbones import Backbone, create_backbone
from growsearch.errors import ConfigError, GrowsearchError, RunFailed
from growsearch.growth.checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, load_model, save_model
from growsearch.growth.surgery import SurgeryResult
from growsearch.metrics.flops_definition import FLOPS_DEFINITION
from growsearch.schedule import GrowthEvent, GrowthSchedule
from growsearch.train import state as st
from growsearch.train.config import TrainConfig
from growsearch.train.evaluate import Scored, autocast, iterate, loss_fn, make_loader, score_split
from growsearch.train.phase import Phase, restore_phase, snapshot, start_phase
from growsearch.vocabulary import SAMPLE_RATE

__all__ = ["NonFiniteLoss", "TrainResult", "train"]

EpochHook = Callable[[dict[str, Any], Path], None]


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or Inf (the run's status is ``nan``)."""


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


# ---- device, precision ------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU.

    Raises:
        ConfigError: ``cuda`` requested without a CUDA device.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: 'cuda' requested but no CUDA device is available (got 'cuda'); use auto or cpu")
    if name == "cuda":  # deterministic cuBLAS (read when cuBLAS initialises)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)


def resolve_amp(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where supported, else fp16; ``None`` on the CPU or ``amp: false``."""
    if device.type != "cuda" or amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ---- model persistence ------------------------------------------------------------------
def model_payload(model: Backbone) -> dict[str, Any]:
    """An in-memory model checkpoint in :mod:`growsearch.growth.checkpoint`'s format
    (spec + events + CPU weights), written to disk with :func:`atomic_torch_save`."""
    if model.spec is None:
        raise RuntimeError("backbone has no spec; build it with create_backbone")
    return {
        "format": CHECKPOINT_FORMAT,
        "spec": model.spec.to_dict(),
        "history": copy.deepcopy(model.history),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": {},
    }


def build_model(config: TrainConfig) -> Backbone:
    """The fresh backbone of ``config.model``, with its pretrained weights if any.

    ``model.pretrained`` goes to the backbone factory as ``pretrained=`` when the backbone
    takes it (wav2vec2: torchaudio / Hugging Face / fairseq files); otherwise the file must
    hold this backbone's state dict (or a growsearch model checkpoint of it), loaded strictly.

    Raises:
        ConfigError: unknown backbone/preset/option, or a pretrained file that is missing or
            does not fit.
    """
    import inspect

    m = config.model
    model = create_backbone(m.backbone, m.preset, **dict(m.options))
    model.max_params = m.max_params  # the size limit its schedules are checked against
    if not m.pretrained:
        return model
    p = Path(os.path.expanduser(m.pretrained))
    if not p.is_file():
        raise ConfigError(f"model.pretrained: file not found (got {m.pretrained!r})")
    if "pretrained" in inspect.signature(type(model).__init__).parameters:
        return create_backbone(m.backbone, m.preset, **dict(m.options), pretrained=str(p))
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        model.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001 - any load failure is a problem with the user's file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model.pretrained: {p} does not fit backbone {m.backbone!r}: {first[:300]}") from None
    return model


# ---- costs -------------------------------------------------------------------------------
_COST_CACHE: dict[str, dict[str, float]] = {}


def _costs(model: Backbone, clip_seconds: float) -> dict[str, float]:
    """Parameters, inference FLOPs per second of audio and training FLOPs per clip.

    FLOPs depend only on the architecture (spec + growth events), so they are cached by it.
    """
    from growsearch.metrics.cost import count_params, flops_per_second, train_flops_per_sample

    key = json.dumps([model.spec.to_dict() if model.spec else None, model.history, clip_seconds], sort_keys=True, default=str)
    if key not in _COST_CACHE:
        _COST_CACHE[key] = {
            "params": int(count_params(model)["total"]),
            "flops": float(flops_per_second(model, seconds=clip_seconds)),
            "train_flops_per_sample": float(train_flops_per_sample(model, seconds=clip_seconds)),
        }
    return dict(_COST_CACHE[key])


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ---- the state that moves from epoch to epoch -----------------------------------------------
@dataclass
class _Run:
    model: Backbone
    phase: Phase
    scheduler: Any
    scaler: Any
    epoch: int = 0  # next epoch to train
    records: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"epoch", "dev_eer", "model": payload}; this schedule's rule
    train_flops: float = 0.0
    # best of the epochs before the first growth with every one of them eligible (what the
    # prefix cache stores instead of ``best``); None: none evaluated yet or not tracked
    prefix_best: dict[str, Any] | None = None


def _make_scheduler(kind: str, optimizer: torch.optim.Optimizer) -> Any:
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
    return None


def _current_lr(phase: Phase) -> float:
    return float(phase.optimizer.param_groups[0]["lr"]) if phase.optimizer.param_groups else phase.lr


def _apply_events(model: Backbone, events: tuple[GrowthEvent, ...], seed: int, epoch: int) -> list[SurgeryResult]:
    """Apply one epoch's events with a generator seeded from ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(st.epoch_seed(seed, epoch) ^ 0x5EED)
    return [model.apply_event(ev, generator=g) for ev in events]


def _phase_settings(events: tuple[GrowthEvent, ...]) -> tuple[str, str, float | None]:
    """(freeze policy, optimizer mode, lr or None) shared by the events of one epoch."""
    lrs = [e.lr for e in events if e.lr is not None]
    return events[0].freeze, events[0].optimizer_state, (lrs[0] if lrs else None)


def _state_extra(run: _Run, run_key: str, prefix_reused: int) -> dict[str, Any]:
    """Everything but the model itself, for ``save_model(..., extra=...)``."""
    return {
        "state_format": st.STATE_FORMAT,
        "run_key": run_key,
        "epoch": run.epoch,
        "phase": run.phase.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": st.get_rng_state(),
        "records": json.loads(json.dumps(run.records)),
        "best": run.best,
        "prefix_best": run.prefix_best,
        "train_flops": run.train_flops,
        "prefix_epochs_reused": prefix_reused,
    }


def _save_state(path: Path, run: _Run, run_key: str, prefix_reused: int) -> None:
    save_model(path, run.model, extra=_state_extra(run, run_key, prefix_reused))


def _save_prefix(path: Path, run: _Run, key: str) -> None:
    """Write the shared prefix: the run's state minus everything that follows this schedule.

    ``best`` is left out (the reader derives its own from ``prefix_best``) and ``run_key``
    (which names the writer's schedule) is replaced by the prefix key.
    """
    extra = _state_extra(run, f"prefix:{key}", 0)
    extra["best"] = None
    save_model(path, run.model, extra=extra)


def _eligible_from(schedule: GrowthSchedule, rule: str) -> int:
    """First epoch whose checkpoint may be the evaluated best (see the module docstring)."""
    if not schedule.events:
        return 0
    last_epoch = schedule.events[-1].epoch
    ends_with_shrink = any(e.action == "shrink" for e in schedule.due(last_epoch))
    return last_epoch if rule == "last_phase" or ends_with_shrink else 0


def _best_after_prefix(prefix_best: dict[str, Any] | None, eligible_from: int, prefix_epochs: int) -> dict[str, Any] | None:
    """The reading trial's ``best`` after a loaded prefix of ``prefix_epochs`` epochs.

    Args:
        prefix_best: the prefix file's best with every prefix epoch eligible.
        eligible_from: first epoch the reader's own rule allows as best.
        prefix_epochs: epochs the prefix covers (``0..prefix_epochs-1``).

    Raises:
        RuntimeError: ``eligible_from`` falls inside the prefix (callers never load then).
    """
    if eligible_from == 0:
        return prefix_best
    if eligible_from >= prefix_epochs:
        return None
    raise RuntimeError(f"eligible window from epoch {eligible_from} starts inside a {prefix_epochs}-epoch prefix")


def _restore(path: Path, config: TrainConfig, schedule: GrowthSchedule, device: torch.device,
             scaler: Any) -> tuple[_Run, dict[str, Any]]:
    """Rebuild the run from a state file (model by event replay, then every other state).

    Returns:
        The run and the file's ``extra`` dict.

    Raises:
        ConfigError: unreadable file, or its growth events are not the schedule's.
    """
    model, extra = load_model(path)
    next_epoch = int(extra["epoch"])
    expected = [e for e in schedule.events if e.epoch < next_epoch]
    recorded = [GrowthEvent.model_validate(e) for e in model.history]
    if recorded != expected:
        raise ConfigError(f"{path}: its growth events differ from the schedule's; rerun with --no-resume")
    model.to(device)
    phase = restore_phase(model, extra["phase"], optimizer_name=config.training.optimizer,
                          weight_decay=config.training.weight_decay)
    scheduler = _make_scheduler(config.training.scheduler, phase.optimizer)
    if scheduler is not None and extra["scheduler"] is not None:
        scheduler.load_state_dict(extra["scheduler"])
    if scaler is not None and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    st.set_rng_state(extra["rng"])
    run = _Run(model, phase, scheduler, scaler, next_epoch, list(extra["records"]), extra["best"],
               float(extra["train_flops"]), extra.get("prefix_best"))
    return run, extra


def _run_key(config: TrainConfig, schedule: GrowthSchedule) -> str:
    d = config.model_dump(mode="json")
    d.pop("schedule", None)
    d["training"].pop("epochs", None)
    return st.prefix_key(d, -1) + ":" + schedule.key_json()  # the spelling of checkpoints made before optimizer_state


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _write_scores(path: Path, scored: Scored) -> None:
    from growsearch.metrics.scores import make_rows, write_scores

    write_scores(path, make_rows(scored.utts, scored.attacks, scored.labels, scored.scores))


def _eer(scored: Scored) -> float:
    from growsearch.metrics.eer import eer

    return float(eer(scored.bona, scored.spoof))


def _min_tdcf(splits: Any, scored: Scored, log: Callable[[str], None]) -> float | None:
    """Legacy min t-DCF of the eval scores when the corpus has ASV scores (ASVspoof), else None."""
    asv = getattr(splits, "asv", {}).get("eval")
    if asv is None or asv.scores is None:
        return None
    from growsearch.metrics.scores import read_asv_scores
    from growsearch.metrics.tdcf import min_tdcf

    try:
        a = read_asv_scores(asv.scores)
        return float(min_tdcf(scored.bona, scored.spoof, asv_tar=a["target"], asv_non=a["nontarget"], asv_spoof=a["spoof"]))
    except GrowsearchError as exc:  # t-DCF is reported, not optimised: EER still stands
        log(f"min t-DCF not computed: {exc}")
        return None


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
            checkpoint is written (``checkpoint_dir`` = ``out_dir/checkpoint``).
        resume: continue from ``out_dir/checkpoint/state.pt`` if it exists.
        prefix_cache: folder of the shared-prefix cache (see :mod:`growsearch.train.state`).
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
    num_workers = config.data.num_workers
    run_key = _run_key(config, schedule)
    ckpt_dir = out / st.CHECKPOINT_DIR
    ckpt_file = ckpt_dir / st.STATE_FILE
    first_growth = schedule.first_epoch
    eligible_from = _eligible_from(schedule, tc.best_checkpoint)
    cfg_dict = config.model_dump(mode="json")
    prefix_id = st.prefix_key(cfg_dict, first_growth) if prefix_cache is not None and first_growth else None
    if prefix_id is not None and 0 < eligible_from < first_growth:  # cannot happen for a valid schedule
        log(f"prefix cache not used: the best checkpoint may only come from epoch {eligible_from} on, inside the prefix")
        prefix_id = None
    prefix_file = st.prefix_path(prefix_cache, prefix_id) if prefix_id is not None else None

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    prefix_reused = 0
    try:
        run: _Run | None = None
        src = ckpt_file
        if resume_from is not None:
            rf = Path(resume_from)
            src = rf / st.STATE_FILE if rf.is_dir() else rf
        if resume and src.is_file():
            run, extra = _restore(src, config, schedule, device, scaler)
            if extra.get("run_key") != run_key:
                raise ConfigError(f"{src}: checkpoint of a different config or schedule; rerun with --no-resume or another --out")
            prefix_reused = int(extra.get("prefix_epochs_reused", 0))
            if "prefix_best" not in extra and run.epoch < (first_growth or 0):
                prefix_file = None  # an older checkpoint without prefix_best: do not write an incomplete prefix
            log(f"resuming {out} at epoch {run.epoch}")
        elif prefix_file is not None and prefix_file.is_file():
            run, extra = _restore(prefix_file, config, schedule, device, scaler)
            if extra.get("run_key") != f"prefix:{prefix_id}" or "prefix_best" not in extra or run.epoch != first_growth:
                log(f"ignoring {prefix_file}: not a prefix state of this key and format; training from epoch 0")
                run = None
            else:
                prefix_reused = run.epoch
                run.best = _best_after_prefix(run.prefix_best, eligible_from, prefix_reused)
                log(f"reusing the shared prefix ({prefix_reused} epochs) from {prefix_file.parent}")
        if run is None:
            model.to(device)
            phase = start_phase(model, results=[], policy="all", optimizer_name=tc.optimizer, lr=tc.lr,
                                weight_decay=tc.weight_decay)
            run = _Run(model, phase, _make_scheduler(tc.scheduler, phase.optimizer), scaler)
        prefix_flops = sum(r["train_flops_epoch"] for r in run.records[:prefix_reused])
        criterion = loss_fn(tc.loss)
        costs = _costs(run.model, clip_s)

        for epoch in range(run.epoch, tc.epochs):
            t0 = time.perf_counter()
            events = schedule.due(epoch)
            if events:
                snap = snapshot(run.phase.optimizer, run.model)
                results = _apply_events(run.model, events, config.seed, epoch)
                run.model.to(device)
                policy, mode, ev_lr = _phase_settings(events)
                lr = ev_lr if ev_lr is not None else _current_lr(run.phase)
                run.phase = start_phase(run.model, results=results, policy=policy, optimizer_name=tc.optimizer, lr=lr,
                                        weight_decay=tc.weight_decay, mode=mode, snap=snap, start_epoch=epoch,
                                        extra_trainable=tc.freeze_extra_trainable)
                run.scheduler = _make_scheduler(tc.scheduler, run.phase.optimizer)
                costs = _costs(run.model, clip_s)
                log(f"epoch {epoch}: applied {', '.join(e.describe() for e in events)} -> {costs['params']} params")

            # every RNG restarts from (seed, epoch): resume and prefix reuse are exact
            st.seed_all(st.epoch_seed(config.seed, epoch))
            if hasattr(splits.train, "set_epoch"):
                splits.train.set_epoch(epoch)
            loader = make_loader(splits.train, batch_size=tc.batch_size, shuffle=True,
                                 seed=st.epoch_seed(config.seed, epoch) % 2**62, num_workers=num_workers,
                                 pin=device.type == "cuda")
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
                    _fail_nan(out, run, schedule, config, epoch, b, float(loss.detach()), splits)
                opt = run.phase.optimizer
                opt.zero_grad(set_to_none=True)
                if run.scaler is not None:
                    run.scaler.scale(loss).backward()
                    run.scaler.unscale_(opt)
                else:
                    loss.backward()
                run.phase.freeze.before_step()
                if tc.grad_clip is not None:
                    nn.utils.clip_grad_norm_([p for _, p in run.phase.freeze.trainable_named_parameters()], tc.grad_clip)
                if run.scaler is not None:
                    run.scaler.step(opt)
                    run.scaler.update()
                else:
                    opt.step()
                run.phase.freeze.after_step()
                loss_sum += loss.detach().double() * wave.shape[0]
                n_seen += int(wave.shape[0])
                n_batches += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_s = time.perf_counter() - t_train
            if n_seen == 0:
                raise ConfigError("training set produced no batches")

            dev_eer: float | None = None
            is_last = epoch == tc.epochs - 1
            if (epoch + 1) % tc.eval_every == 0 or is_last:
                dev = score_split(run.model, splits.dev, device=device, amp_dtype=amp_dtype, batch_size=tc.batch_size,
                                  num_workers=num_workers, max_batches=tc.max_eval_batches)
                if not np.isfinite(dev.scores).all():
                    _fail_nan(out, run, schedule, config, epoch, n_batches, float("nan"), splits, what="dev scores")
                dev_eer = _eer(dev)
                new_best = epoch >= eligible_from and (run.best is None or dev_eer < run.best["dev_eer"])
                new_prefix_best = (first_growth is not None and epoch < first_growth
                                   and (run.prefix_best is None or dev_eer < run.prefix_best["dev_eer"]))
                if new_best or new_prefix_best:
                    cand = {"epoch": epoch, "dev_eer": dev_eer, "model": model_payload(run.model)}
                    run.best = cand if new_best else run.best
                    run.prefix_best = cand if new_prefix_best else run.prefix_best
                if run.scheduler is not None:
                    run.scheduler.step(dev_eer)

            epoch_flops = n_seen * costs["train_flops_per_sample"]
            run.train_flops += epoch_flops
            record = {
                "epoch": epoch,
                "train_loss": float(loss_sum.item() / n_seen),
                "dev_eer": dev_eer,
                "params": costs["params"],
                "trainable_params": run.phase.trainable_count(),
                "flops": costs["flops"],
                "lr": _current_lr(run.phase),
                "samples": n_seen,
                "batches": n_batches,
                "train_flops_epoch": epoch_flops,
                "train_flops": run.train_flops,
                "wall_s": time.perf_counter() - t0,
                "samples_per_s": n_seen / train_s if train_s > 0 else float("inf"),
                "peak_mem_mb": _peak_mem_mb(device),
                "events": [e.to_dict() if hasattr(e, "to_dict") else e.model_dump() for e in events],
            }
            run.records.append(record)
            run.epoch = epoch + 1
            _save_state(ckpt_file, run, run_key, prefix_reused)
            if prefix_file is not None and prefix_id is not None and run.epoch == first_growth and not prefix_file.is_file():
                _save_prefix(prefix_file, run, prefix_id)
            if first_growth is not None and run.epoch >= first_growth:
                run.prefix_best = None  # only the prefix file needs it; free the copy
            dev_s = "-" if dev_eer is None else f"{dev_eer:.4f}"
            log(f"epoch {epoch} ({epoch + 1}/{tc.epochs} epochs) loss {record['train_loss']:.4f} dev_eer {dev_s} "
                f"params {record['params']} {record['samples_per_s']:.1f} samples/s {record['wall_s']:.1f}s")
            if on_epoch is not None:
                on_epoch(record, ckpt_dir)

        metrics, best_model = _finish(run, config, schedule, splits, device, amp_dtype, out, clip_s, log)
        metrics["prefix_epochs_reused"] = prefix_reused
        metrics["train_flops_saved"] = float(prefix_flops)
        _write_json(out / "metrics.json", metrics)
        log(f"done: dev_eer {metrics['dev_eer']:.4f} eval_eer {metrics['eval_eer']:.4f} (best epoch {metrics['best_epoch']})")
        return TrainResult("ok", metrics, out, best_model)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


def _summary(run: _Run, config: TrainConfig, schedule: GrowthSchedule, splits: Any) -> dict[str, Any]:
    return {
        "backbone": config.model.backbone,
        "preset": config.model.preset,
        "seed": config.seed,
        "schedule": schedule.to_dict(),
        "epochs": run.records,
        "skipped_files": [{"path": p, "reason": r} for p, r in getattr(splits, "skipped", [])],
    }


def _fail_nan(out: Path, run: _Run, schedule: GrowthSchedule, config: TrainConfig, epoch: int, batch: int,
              value: float, splits: Any, *, what: str = "training loss") -> None:
    metrics = {"status": "nan", **_summary(run, config, schedule, splits), "failed_epoch": epoch, "failed_batch": batch,
               "eval_eer": None, "dev_eer": None, "best_epoch": None, "train_flops": run.train_flops}
    _write_json(out / "metrics.json", metrics)
    raise NonFiniteLoss(f"{what} is {value} at epoch {epoch}, batch {batch} "
                        f"(lr {_current_lr(run.phase):g}); metrics.json has status nan")


def _finish(run: _Run, config: TrainConfig, schedule: GrowthSchedule, splits: Any, device: torch.device,
            amp_dtype: torch.dtype | None, out: Path, clip_s: float, log: Callable[[str], None]) -> tuple[dict[str, Any], Backbone]:
    tc = config.training
    if run.best is None:  # cannot happen: the last epoch is always evaluated and eligible
        raise RuntimeError("no best checkpoint was recorded")
    blob = dict(run.best["model"])
    blob["extra"] = {"epoch": int(run.best["epoch"]), "dev_eer": float(run.best["dev_eer"])}
    atomic_torch_save(blob, out / "best_model.pt")
    best, _ = load_model(out / "best_model.pt")
    best.to(device)
    ev = score_split(best, splits.eval, device=device, amp_dtype=amp_dtype, batch_size=tc.batch_size,
                     num_workers=config.data.num_workers, max_batches=tc.max_eval_batches)
    _write_scores(out / "scores.txt", ev)
    costs = _costs(best, clip_s)
    samples_total = sum(r["samples"] for r in run.records)
    metrics = {
        "status": "ok",
        "eval_eer": _eer(ev),
        "dev_eer": float(run.best["dev_eer"]),
        "min_tdcf": _min_tdcf(splits, ev, log),
        "params": costs["params"],
        "flops": costs["flops"],
        "flops_definition": FLOPS_DEFINITION,
        "train_flops": float(run.train_flops),
        "train_flops_scratch_final": float(samples_total * _costs(run.model, clip_s)["train_flops_per_sample"]),
        "best_epoch": int(run.best["epoch"]),
        "wall_s": float(sum(r["wall_s"] for r in run.records)),
        **_summary(run, config, schedule, splits),
    }
    best.eval()
    return metrics, best
