"""Evaluation and bookkeeping: the dev EER and the best checkpoint, the per-epoch record,
the final evaluation on eval and ``metrics.json``.

The best-checkpoint rule and the meaning of the cost fields are in
:mod:`growsearch.train.loop`'s docstring.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growsearch.atomic import atomic_write_text
from growsearch.backbones import Backbone
from growsearch.backbones.checkpoint import atomic_torch_save, load_model, model_blob
from growsearch.errors import GrowsearchError, RunFailed
from growsearch.metrics.flops_definition import FLOPS_DEFINITION
from growsearch.schedule import GrowthEvent, GrowthSchedule
from growsearch.train.config import TrainConfig
from growsearch.train.epoch import EpochStats
from growsearch.train.evaluate import Scored, score_split
from growsearch.train.phase import current_lr
from growsearch.train.resume import RunState

__all__ = ["NonFiniteLoss", "costs", "epoch_line", "epoch_record", "evaluate_dev", "fail_nan", "finish", "write_json"]


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or Inf (the run's status is ``nan``)."""


# ---- costs ---------------------------------------------------------------------------------
_COST_CACHE: dict[str, dict[str, float]] = {}


def costs(model: Backbone, clip_seconds: float) -> dict[str, float]:
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


# ---- per epoch -----------------------------------------------------------------------------
def evaluate_dev(run: RunState, dev_set: Any, config: TrainConfig, *, epoch: int, eligible_from: int,
                 windows: tuple[int, ...], device: torch.device, amp_dtype: torch.dtype | None,
                 on_nonfinite: Callable[[], None]) -> float:
    """Score the dev set; keep the checkpoint if it is the best so far; step the LR scheduler.

    ``run.window_best[w]`` is the best of the epochs from ``w`` on, for every window start
    ``w`` in ``windows`` already reached (what the prefix cache stores); ``run.best`` follows
    this schedule's rule: the window from ``eligible_from``.

    Args:
        on_nonfinite: called when a dev score is NaN/Inf (it raises).

    Returns:
        The dev EER.
    """
    tc = config.training
    dev = score_split(run.model, dev_set, device=device, amp_dtype=amp_dtype, batch_size=tc.batch_size,
                      num_workers=config.data.num_workers, max_batches=tc.max_eval_batches)
    if not np.isfinite(dev.scores).all():
        on_nonfinite()
    dev_eer = _eer(dev)
    improved = [w for w in windows if w <= epoch and (w not in run.window_best or dev_eer < run.window_best[w]["dev_eer"])]
    if improved:
        cand = {"epoch": epoch, "dev_eer": dev_eer, "model": model_blob(run.model)}
        for w in improved:
            run.window_best[w] = cand
    if epoch >= eligible_from:
        run.best = run.window_best.get(eligible_from, run.best)
    if run.scheduler is not None:
        run.scheduler.step(dev_eer)
    return dev_eer


def epoch_record(run: RunState, epoch: int, stats: EpochStats, dev_eer: float | None, cost: dict[str, float],
                 events: tuple[GrowthEvent, ...], t0: float, device: torch.device) -> dict[str, Any]:
    """Count the epoch's training FLOPs into ``run`` and return its ``metrics.json`` record
    (``t0``: when the epoch started, for ``wall_s``)."""
    epoch_flops = stats.samples * cost["train_flops_per_sample"]
    run.train_flops += epoch_flops
    return {
        "epoch": epoch,
        "train_loss": float(stats.loss_sum.item() / stats.samples),
        "dev_eer": dev_eer,
        "params": cost["params"],
        "trainable_params": run.phase.trainable_count(),
        "flops": cost["flops"],
        "lr": current_lr(run.phase),
        "samples": stats.samples,
        "batches": stats.batches,
        "train_flops_epoch": epoch_flops,
        "train_flops": run.train_flops,
        "wall_s": time.perf_counter() - t0,
        "samples_per_s": stats.samples / stats.train_s if stats.train_s > 0 else float("inf"),
        "peak_mem_mb": _peak_mem_mb(device),
        "events": [e.to_dict() if hasattr(e, "to_dict") else e.model_dump() for e in events],
    }


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The progress line of an epoch."""
    dev_s = "-" if record["dev_eer"] is None else f"{record['dev_eer']:.4f}"
    e = record["epoch"]
    return (f"epoch {e} ({e + 1}/{epochs} epochs) loss {record['train_loss']:.4f} dev_eer {dev_s} "
            f"params {record['params']} {record['samples_per_s']:.1f} samples/s {record['wall_s']:.1f}s")


# ---- the end of a run ------------------------------------------------------------------------
def _summary(run: RunState, config: TrainConfig, schedule: GrowthSchedule, splits: Any) -> dict[str, Any]:
    return {
        "backbone": config.model.backbone,
        "preset": config.model.preset,
        "seed": config.seed,
        "schedule": schedule.to_dict(),
        "epochs": run.records,
        "skipped_files": [{"path": p, "reason": r} for p, r in getattr(splits, "skipped", [])],
    }


def fail_nan(out: Path, run: RunState, schedule: GrowthSchedule, config: TrainConfig, epoch: int, batch: int,
             value: float, splits: Any, *, what: str = "training loss") -> None:
    """Write ``metrics.json`` with ``status: nan`` and raise.

    Raises:
        NonFiniteLoss: always.
    """
    metrics = {"status": "nan", **_summary(run, config, schedule, splits), "failed_epoch": epoch, "failed_batch": batch,
               "eval_eer": None, "dev_eer": None, "best_epoch": None, "train_flops": run.train_flops}
    write_json(out / "metrics.json", metrics)
    raise NonFiniteLoss(f"{what} is {value} at epoch {epoch}, batch {batch} "
                        f"(lr {current_lr(run.phase):g}); metrics.json has status nan")


def finish(run: RunState, config: TrainConfig, schedule: GrowthSchedule, splits: Any, device: torch.device,
           amp_dtype: torch.dtype | None, out: Path, clip_s: float, log: Callable[[str], None]) -> tuple[dict[str, Any], Backbone]:
    """Write ``best_model.pt``, score it on eval (``scores.txt``) and return the metrics
    (without the prefix-cache fields) and the best model in eval mode."""
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
    cost = costs(best, clip_s)
    samples_total = sum(r["samples"] for r in run.records)
    metrics = {
        "status": "ok",
        "eval_eer": _eer(ev),
        "dev_eer": float(run.best["dev_eer"]),
        "min_tdcf": _min_tdcf(splits, ev, log),
        "params": cost["params"],
        "flops": cost["flops"],
        "flops_definition": FLOPS_DEFINITION,
        "train_flops": float(run.train_flops),
        "train_flops_scratch_final": float(samples_total * costs(run.model, clip_s)["train_flops_per_sample"]),
        "best_epoch": int(run.best["epoch"]),
        "wall_s": float(sum(r["wall_s"] for r in run.records)),
        **_summary(run, config, schedule, splits),
    }
    best.eval()
    return metrics, best


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
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
        return float(min_tdcf(scored.bona, scored.spoof, asv_tar=a.target, asv_non=a.nontarget, asv_spoof=a.spoof))
    except GrowsearchError as exc:  # t-DCF is reported, not optimised: EER still stands
        log(f"min t-DCF not computed: {exc}")
        return None
