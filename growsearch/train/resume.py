"""Where a run starts and what it writes after each epoch: resume, the shared prefix, checkpoints.

:func:`start_run` decides where a run starts (the policy is in :mod:`growsearch.train.loop`'s
docstring): from its own resumable checkpoint (``out_dir/checkpoint/state.pt`` or
``resume_from``) when one exists and ``resume`` is on, else from the shared prefix of its
config when the prefix cache holds it, else from epoch 0. :func:`write_checkpoints` writes
the resumable checkpoint after every epoch and the shared prefix once, after the epoch
before the first growth. Both files are :mod:`growsearch.backbones.checkpoint` model
checkpoints whose ``extra`` holds the rest of the run (:func:`state_extra`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from growsearch.backbones import Backbone
from growsearch.backbones.checkpoint import load_model, save_model
from growsearch.errors import ConfigError
from growsearch.schedule import GrowthEvent, GrowthSchedule
from growsearch.train import state as st
from growsearch.train.config import TrainConfig
from growsearch.train.phase import Phase, make_scheduler, restore_phase, start_phase

__all__ = ["Plan", "RunState", "best_after_prefix", "eligible_from", "plan", "run_key", "start_run", "state_extra",
           "write_checkpoints"]


@dataclass
class RunState:
    """The state that moves from epoch to epoch (all of it is in the resumable checkpoint).

    Attributes:
        model, phase, scheduler, scaler: what trains and how (scheduler/scaler may be None).
        epoch: the next epoch to train.
        records: the per-epoch records so far.
        best: ``{"epoch", "dev_eer", "model": checkpoint blob}`` under this schedule's rule.
        train_flops: training FLOPs so far.
        prefix_best: best of the epochs before the first growth with every one of them
            eligible (what the prefix cache stores instead of ``best``); None: none evaluated
            yet or not tracked.
    """

    model: Backbone
    phase: Phase
    scheduler: Any
    scaler: Any
    epoch: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    train_flops: float = 0.0
    prefix_best: dict[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    """Where a run's files are and which epochs may be its best (fixed before training).

    Attributes:
        run_key: identity of config + schedule, stored in the resumable checkpoint.
        ckpt_file: ``out_dir/checkpoint/state.pt``.
        first_growth: epoch of the schedule's first event (None: no events).
        eligible_from: first epoch whose checkpoint may be the evaluated best.
        prefix_id: the prefix-cache key (None: the cache is not used).
        prefix_file: where the shared prefix lives (None: the cache is not used).
    """

    run_key: str
    ckpt_file: Path
    first_growth: int | None
    eligible_from: int
    prefix_id: str | None
    prefix_file: Path | None


def run_key(config: TrainConfig, schedule: GrowthSchedule) -> str:
    """Identity of a run: the config (without schedule and epochs) hashed, plus the schedule."""
    d = config.identity()
    d.pop("schedule", None)
    d["training"].pop("epochs", None)
    return st.prefix_key(d, -1) + ":" + schedule.key_json()  # the spelling of checkpoints made before optimizer_state


def eligible_from(schedule: GrowthSchedule, rule: str) -> int:
    """First epoch whose checkpoint may be the evaluated best (see :mod:`growsearch.train.loop`)."""
    if not schedule.events:
        return 0
    last_epoch = schedule.events[-1].epoch
    ends_with_shrink = any(e.action == "shrink" for e in schedule.due(last_epoch))
    return last_epoch if rule == "last_phase" or ends_with_shrink else 0


def best_after_prefix(prefix_best: dict[str, Any] | None, eligible: int, prefix_epochs: int) -> dict[str, Any] | None:
    """The reading trial's ``best`` after a loaded prefix of ``prefix_epochs`` epochs.

    Args:
        prefix_best: the prefix file's best with every prefix epoch eligible.
        eligible: first epoch the reader's own rule allows as best.
        prefix_epochs: epochs the prefix covers (``0..prefix_epochs-1``).

    Raises:
        RuntimeError: ``eligible`` falls inside the prefix (callers never load then).
    """
    if eligible == 0:
        return prefix_best
    if eligible >= prefix_epochs:
        return None
    raise RuntimeError(f"eligible window from epoch {eligible} starts inside a {prefix_epochs}-epoch prefix")


def plan(config: TrainConfig, schedule: GrowthSchedule, out: Path, prefix_cache: str | Path | None,
         log: Callable[[str], None]) -> Plan:
    """The run's key, files and best-checkpoint window; whether the prefix cache applies.

    The cache applies when a cache folder is given and the schedule's first event is after
    epoch 0, unless the eligible window starts inside the prefix (not for a valid schedule).
    """
    first_growth = schedule.first_epoch
    eligible = eligible_from(schedule, config.training.best_checkpoint)
    prefix_id = st.prefix_key(config.identity(), first_growth) if prefix_cache is not None and first_growth else None
    if prefix_id is not None and first_growth is not None and 0 < eligible < first_growth:  # not for a valid schedule
        log(f"prefix cache not used: the best checkpoint may only come from epoch {eligible} on, inside the prefix")
        prefix_id = None
    prefix_file = st.prefix_path(prefix_cache, prefix_id) if prefix_id is not None and prefix_cache is not None else None
    return Plan(run_key(config, schedule), out / st.CHECKPOINT_DIR / st.STATE_FILE, first_growth, eligible,
                prefix_id, prefix_file)


def start_run(p: Plan, model: Backbone, config: TrainConfig, schedule: GrowthSchedule, device: torch.device, scaler: Any, *,
              resume: bool, resume_from: str | Path | None, out: Path,
              log: Callable[[str], None]) -> tuple[RunState, int, Plan]:
    """The run's starting state: resumed, from the shared prefix, or fresh at epoch 0.

    Args:
        p: the run's :func:`plan`.
        model: the fresh model (used when the run starts at epoch 0).
        resume: continue from the resumable checkpoint if one exists.
        resume_from: a ``state.pt`` or a folder holding one, instead of ``p.ckpt_file``.

    Returns:
        ``(run, prefix_reused, plan)``: ``prefix_reused`` is the number of epochs the run owes
        to the prefix cache (kept across resumes); ``plan`` is ``p``, without its prefix file
        when an older checkpoint cannot write a complete prefix.

    Raises:
        ConfigError: the checkpoint is unreadable or belongs to another config or schedule.
    """
    src = p.ckpt_file
    if resume_from is not None:
        rf = Path(resume_from)
        src = rf / st.STATE_FILE if rf.is_dir() else rf
    if resume and src.is_file():
        run, extra = _restore(src, config, schedule, device, scaler)
        if extra.get("run_key") != p.run_key:
            raise ConfigError(f"{src}: checkpoint of a different config or schedule; rerun with --no-resume or another --out")
        if "prefix_best" not in extra and run.epoch < (p.first_growth or 0):
            # an older checkpoint without prefix_best: do not write an incomplete prefix
            p = replace(p, prefix_file=None)
        log(f"resuming {out} at epoch {run.epoch}")
        return run, int(extra.get("prefix_epochs_reused", 0)), p
    if p.prefix_file is not None and p.prefix_file.is_file():
        run, extra = _restore(p.prefix_file, config, schedule, device, scaler)
        if extra.get("run_key") != f"prefix:{p.prefix_id}" or "prefix_best" not in extra or run.epoch != p.first_growth:
            log(f"ignoring {p.prefix_file}: not a prefix state of this key and format; training from epoch 0")
        else:
            run.best = best_after_prefix(run.prefix_best, p.eligible_from, run.epoch)
            log(f"reusing the shared prefix ({run.epoch} epochs) from {p.prefix_file.parent}")
            return run, run.epoch, p
    tc = config.training
    model.to(device)
    phase = start_phase(model, results=[], policy="all", optimizer_name=tc.optimizer, lr=tc.lr, weight_decay=tc.weight_decay)
    return RunState(model, phase, make_scheduler(tc.scheduler, phase.optimizer), scaler), 0, p


def state_extra(run: RunState, key: str, prefix_reused: int) -> dict[str, Any]:
    """Everything but the model itself, for ``save_model(..., extra=...)``."""
    return {
        "state_format": st.STATE_FORMAT,
        "run_key": key,
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


def write_checkpoints(p: Plan, run: RunState, prefix_reused: int) -> None:
    """After an epoch: write the resumable checkpoint, and the shared prefix when this epoch
    was the last before the first growth and the cache does not hold it yet.

    The prefix leaves out ``best`` (each reader derives its own from ``prefix_best``) and
    its ``run_key`` (which names the writer's schedule) is the prefix key. Once the first
    growth is reached ``run.prefix_best`` is dropped (only the prefix file needs it).
    """
    save_model(p.ckpt_file, run.model, extra=state_extra(run, p.run_key, prefix_reused))
    if p.prefix_file is not None and p.prefix_id is not None and run.epoch == p.first_growth and not p.prefix_file.is_file():
        extra = state_extra(run, f"prefix:{p.prefix_id}", 0)
        extra["best"] = None
        save_model(p.prefix_file, run.model, extra=extra)
    if p.first_growth is not None and run.epoch >= p.first_growth:
        run.prefix_best = None


def _restore(path: Path, config: TrainConfig, schedule: GrowthSchedule, device: torch.device,
             scaler: Any) -> tuple[RunState, dict[str, Any]]:
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
    scheduler = make_scheduler(config.training.scheduler, phase.optimizer)
    if scheduler is not None and extra["scheduler"] is not None:
        scheduler.load_state_dict(extra["scheduler"])
    if scaler is not None and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    st.set_rng_state(extra["rng"])
    run = RunState(model, phase, scheduler, scaler, next_epoch, list(extra["records"]), extra["best"],
                   float(extra["train_flops"]), extra.get("prefix_best"))
    return run, extra
