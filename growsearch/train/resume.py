"""Where a run starts and what it writes after each epoch: resume, the shared prefix, checkpoints.

:func:`start_run` decides where a run starts (the policy is in :mod:`growsearch.train.loop`'s
docstring): from its own resumable checkpoint (``out_dir/checkpoint/state.pt`` or
``resume_from``) when one exists and ``resume`` is on, else from the longest shared prefix of
its config and schedule that the prefix cache holds, else from epoch 0.
:func:`write_checkpoints` writes the resumable checkpoint after every epoch and, when the
cache does not hold it yet, the state at that epoch boundary as a shared prefix. Both are
:mod:`growsearch.backbones.checkpoint` model checkpoints whose ``extra`` holds the rest of
the run (:func:`state_extra`); the cache's files are managed by
:mod:`growsearch.train.prefix_cache`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from growsearch.backbones import Backbone
from growsearch.backbones.checkpoint import load_model, model_blob, save_model
from growsearch.errors import ConfigError
from growsearch.schedule import GrowthEvent, GrowthSchedule, legacy_spelling
from growsearch.train import state as st
from growsearch.train.config import TrainConfig
from growsearch.train.phase import Phase, make_scheduler, restore_phase, start_phase
from growsearch.train.prefix_cache import PrefixCache
from growsearch.train.prefix_claims import PrefixClaims

__all__ = ["Plan", "RunState", "best_after_prefix", "eligible_from", "plan", "prefix_keys", "run_key", "start_run",
           "state_extra", "write_checkpoints"]


@dataclass
class RunState:
    """The state that moves from epoch to epoch (all of it is in the resumable checkpoint).

    Attributes:
        model, phase, scheduler, scaler: what trains and how (scheduler/scaler may be None).
        epoch: the next epoch to train.
        records: the per-epoch records so far.
        best: ``{"epoch", "dev_eer", "model": checkpoint blob}`` under this schedule's rule.
        train_flops: training FLOPs so far.
        window_best: for every window start ``w`` reached (epoch 0 and each event epoch so
            far), the best of the evaluated epochs from ``w`` on with all of them eligible
            (what a prefix stores instead of ``best``; ``best`` is one of them).
    """

    model: Backbone
    phase: Phase
    scheduler: Any
    scaler: Any
    epoch: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    train_flops: float = 0.0
    window_best: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Where a run's files are and which epochs may be its best (fixed before training).

    Attributes:
        run_key: identity of config + schedule, stored in the resumable checkpoint.
        ckpt_file: ``out_dir/checkpoint/state.pt``.
        windows: the epochs a best-checkpoint window may start at: 0 and the schedule's
            event epochs.
        eligible_from: first epoch whose checkpoint may be the evaluated best (one of
            ``windows``).
        cache: the prefix cache (None: not used).
        prefix_keys: ``{epoch: key}`` of the state at the start of every epoch
            ``1..epochs-1`` (empty when the cache is not used).
        claims: this run's claims on the prefixes it trains (None: the cache is not used).
        prefix_wait_s: seconds the run waited for a prefix another trial was training.
    """

    run_key: str
    ckpt_file: Path
    windows: tuple[int, ...]
    eligible_from: int
    cache: PrefixCache | None = None
    prefix_keys: dict[int, str] = field(default_factory=dict)
    claims: PrefixClaims | None = None
    prefix_wait_s: float = 0.0


def run_key(config: TrainConfig, schedule: GrowthSchedule) -> str:
    """Identity of a run: the config (without schedule and epochs) hashed, plus the schedule."""
    d = config.identity()
    d.pop("schedule", None)
    d["training"].pop("epochs", None)
    return st.config_key(d) + ":" + schedule.key_json()  # the spelling of checkpoints made before optimizer_state


def eligible_from(schedule: GrowthSchedule, rule: str) -> int:
    """First epoch whose checkpoint may be the evaluated best (see :mod:`growsearch.train.loop`)."""
    if not schedule.events:
        return 0
    last_epoch = schedule.events[-1].epoch
    ends_with_shrink = any(e.action == "shrink" for e in schedule.due(last_epoch))
    return last_epoch if rule == "last_phase" or ends_with_shrink else 0


def best_after_prefix(window_best: dict[int, dict[str, Any]], eligible: int, prefix_epochs: int) -> dict[str, Any] | None:
    """The reading trial's ``best`` after a loaded prefix of ``prefix_epochs`` epochs.

    Args:
        window_best: the prefix file's best per window start, every epoch of a window eligible.
        eligible: first epoch the reader's own rule allows as best (0 or an event epoch,
            so a window start whenever it is inside the prefix).
        prefix_epochs: epochs the prefix covers (``0..prefix_epochs-1``).
    """
    if eligible >= prefix_epochs:
        return None
    return window_best.get(eligible)


def prefix_keys(config: TrainConfig, schedule: GrowthSchedule) -> dict[int, str]:
    """``{e: key}`` of the state at the start of every epoch ``1..epochs-1`` (the last epoch's
    end is never a prefix: the last epoch is evaluated whatever ``eval_every`` says)."""
    ident = config.identity()
    ident.pop("schedule", None)
    events = legacy_spelling(schedule.to_dict())["events"]
    return {e: st.prefix_key(ident, e, [ev for ev in events if ev["epoch"] < e])
            for e in range(1, config.training.epochs)}


def plan(config: TrainConfig, schedule: GrowthSchedule, out: Path, prefix_cache: str | Path | None,
         log: Callable[[str], None]) -> Plan:
    """The run's key, files and best-checkpoint windows; the prefix keys when a cache folder is given."""
    windows = (0, *(e for e in schedule.epochs_with_events if e > 0))
    eligible = eligible_from(schedule, config.training.best_checkpoint)
    cache = PrefixCache(Path(prefix_cache), log) if prefix_cache is not None else None
    keys = prefix_keys(config, schedule) if cache is not None else {}
    claims = PrefixClaims(cache.root, log) if cache is not None else None
    return Plan(run_key(config, schedule), out / st.CHECKPOINT_DIR / st.STATE_FILE, windows, eligible, cache, keys, claims)


def start_run(p: Plan, model: Backbone, config: TrainConfig, schedule: GrowthSchedule, device: torch.device, scaler: Any, *,
              resume: bool, resume_from: str | Path | None, out: Path,
              log: Callable[[str], None]) -> tuple[RunState, int, Plan]:
    """The run's starting state: resumed, from the longest cached prefix, or fresh at epoch 0.

    Args:
        p: the run's :func:`plan`.
        model: the fresh model (used when the run starts at epoch 0).
        resume: continue from the resumable checkpoint if one exists.
        resume_from: a ``state.pt`` or a folder holding one, instead of ``p.ckpt_file``.

    Returns:
        ``(run, prefix_reused, plan)``: ``prefix_reused`` is the number of epochs the run owes
        to the prefix cache (kept across resumes); ``plan`` is ``p``, without its cache when
        an older checkpoint cannot write complete prefixes.

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
        if "window_best" not in extra:  # an older checkpoint: its windows are incomplete, write no prefix from it
            run.window_best = {p.eligible_from: run.best} if run.best is not None else {}
            p = replace(p, cache=None, prefix_keys={})
        log(f"resuming {out} at epoch {run.epoch}")
        _claim_rest(p, run.epoch)
        return run, int(extra.get("prefix_epochs_reused", 0)), p
    if p.cache is not None:
        root = p.cache.root
        p = replace(p, prefix_wait_s=_wait_for_claimed(p))
        for e in sorted(p.prefix_keys, reverse=True):
            loaded = _load_prefix(p, e, config, schedule, device, scaler, log)
            if loaded is not None:
                loaded.best = best_after_prefix(loaded.window_best, p.eligible_from, e)
                log(f"reusing a shared prefix ({e} epochs) from {root}")
                _claim_rest(p, e)
                return loaded, e, p
        _claim_rest(p, 0)
    tc = config.training
    model.to(device)
    phase = start_phase(model, results=[], policy="all", optimizer_name=tc.optimizer, lr=tc.lr, weight_decay=tc.weight_decay)
    return RunState(model, phase, make_scheduler(tc.scheduler, phase.optimizer), scaler), 0, p


def _cached_depth(p: Plan) -> int:
    """The deepest epoch whose prefix entry the cache holds (unverified; 0: none)."""
    assert p.cache is not None
    return max((e for e, key in p.prefix_keys.items() if p.cache.has(key)), default=0)


def _wait_for_claimed(p: Plan) -> float:
    """Wait (at most the cache's ``max_wait_s``) while another live trial trains a prefix of
    this schedule deeper than the cache holds, so the run starts from it instead of training
    the same epochs twice; returns the seconds waited."""
    assert p.cache is not None and p.claims is not None
    return p.claims.wait(p.prefix_keys, lambda: _cached_depth(p), p.cache.max_wait_s)


def _claim_rest(p: Plan, start: int) -> None:
    """Claim the prefix entries this run will write after epoch ``start`` that the cache lacks."""
    if p.cache is None or p.claims is None:
        return
    p.claims.claim(key for e, key in sorted(p.prefix_keys.items()) if e > start and not p.cache.has(key))


def _load_prefix(p: Plan, e: int, config: TrainConfig, schedule: GrowthSchedule, device: torch.device, scaler: Any,
                 log: Callable[[str], None]) -> RunState | None:
    """The cached state at the start of epoch ``e``, or ``None`` (a miss, or an entry that is
    not what its key says: removed, never trusted)."""
    assert p.cache is not None
    key = p.prefix_keys[e]
    path = p.cache.lookup(key)
    if path is None:
        return None
    try:
        run, extra = _restore(path, config, schedule, device, scaler)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        log(f"prefix cache: ignoring {path.name} ({str(exc)[:200]}); removed")
        p.cache.discard(key)
        return None
    if (extra.get("run_key") != f"prefix:{key}" or extra.get("state_format") != st.STATE_FORMAT or run.epoch != e
            or not isinstance(extra.get("window_best"), dict)):
        log(f"prefix cache: ignoring {path.name}: not the prefix state of this key and format; removed")
        p.cache.discard(key)
        return None
    return run


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
        "window_best": dict(run.window_best),
        "train_flops": run.train_flops,
        "prefix_epochs_reused": prefix_reused,
    }


def write_checkpoints(p: Plan, run: RunState, prefix_reused: int) -> None:
    """After an epoch: write the resumable checkpoint, and the state at this epoch boundary
    as a shared prefix when the cache does not hold it yet (a hit only touches it).

    The prefix leaves out ``best`` (each reader derives its own from ``window_best``) and
    its ``run_key`` (which names the writer's schedule) is the prefix key.
    """
    save_model(p.ckpt_file, run.model, extra=state_extra(run, p.run_key, prefix_reused))
    key = p.prefix_keys.get(run.epoch)
    if p.cache is None or key is None:
        return
    extra = state_extra(run, f"prefix:{key}", 0)
    extra["best"] = None
    p.cache.store(key, lambda tmp: torch.save(model_blob(run.model, extra=extra), tmp))
    if p.claims is not None:
        p.claims.release(key)


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
    window_best = {int(w): b for w, b in (extra.get("window_best") or {}).items()}
    run = RunState(model, phase, scheduler, scaler, next_epoch, list(extra["records"]), extra["best"],
                   float(extra["train_flops"]), window_best)
    return run, extra
