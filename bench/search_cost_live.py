"""Compute per strategy, live: hypervolume against cumulative training FLOPs on the quickstart; prints JSON.

Issue 14, item 4 (the live part; ``bench/search_cost.py`` is the simulated one on GrowBench).
The quickstart study (real training on the generated corpus, local Ray) runs once per
strategy, each in its own folder (its own SQLite study and shared-prefix cache), with the same
trial budget and training seed:

- ``nsga2_full``: NSGA-II, every trial to its last epoch (the reference);
- ``random_full``: random search, every trial to its last epoch;
- ``nsga2_moasha``: NSGA-II + growth-aware MOASHA (``--rungs``, ``--reduction-factor``);
- ``pbg``: population-based growth (``--pbg-population`` members from ``--pbg-sampler``, then
  children; a boundary every ``--pbg-interval`` epochs, ``--pbg-quantile``; its own trial
  budget ``--pbg-trials``, default twice the others': a child costs only the epochs after its
  boundary, so strategies are compared by the FLOPs they spent, not by trials).

**Clock.** The training FLOPs a study actually spent, in the order its trials finished: a
COMPLETE trial's ``train_flops`` less what the shared-prefix cache spared it
(``train_flops_saved``), a PRUNED trial's FLOPs up to where it stopped (less the cache's
share for a PBG child); the same rule as ``budget.train_flops``
(:meth:`~growsearch.search.searcher.StudySearcher.spent_train_flops`). Every strategy uses the
cache, so full fidelity gets its savings too.

**Target** = the hypervolume of ``nsga2_full``'s COMPLETE trials at the end; ``full`` = its
training FLOPs. ``flops_to_target``: the clock at which a strategy's hypervolume first
reaches the target (``null``: never), ``ratio_vs_full`` = that / ``full`` (goal: <= 0.40).
All hypervolumes in one normalised space (:func:`growsearch.report.hypervolume.hv_space` over
every strategy's points), the study's objectives. One run per strategy: one sample, not a
mean (the simulated benchmark gives the spread). Usage::

    python bench/search_cost_live.py [--trials 32] [--strategies nsga2_full random_full nsga2_moasha pbg]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)
STRATEGIES = ("nsga2_full", "random_full", "nsga2_moasha", "pbg")
REFERENCE = "nsga2_full"
GOAL = 0.40


def spent(t: optuna.trial.FrozenTrial) -> float:
    """Training FLOPs trial ``t`` spent (the searcher's rule)."""
    from growsearch.search.attrs import PREFIX_FLOPS_SAVED, TRIAL_METRICS, TRIAL_PRUNED

    rec = (TRIAL_METRICS.get(t) if t.state == TrialState.COMPLETE else TRIAL_PRUNED.get(t)) or {}
    total = float(rec.get("train_flops") or 0.0)
    return total - min(float(rec.get(PREFIX_FLOPS_SAVED) or 0.0), total)


def run(name: str, scheduler: dict[str, Any], sampler: str, args: argparse.Namespace, work: Path,
        trials: int | None = None) -> dict[str, Any]:
    from growsearch.search.runner import run_study
    from growsearch.search.schedulers import parse_scheduler
    from growsearch.search.study import Budget, SamplerConfig, load_study_config

    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    trials = trials or args.trials
    cfg = cfg.model_copy(update={
        "name": name, "outputs": str(work / name), "budget": Budget(trials=trials),
        "scheduler": parse_scheduler(scheduler, "bench", epochs=cfg.epochs),
        "sampler": SamplerConfig(name=sampler, seed=args.seed),
        "execution": cfg.execution.model_copy(update={"max_concurrent": args.concurrent}),
    })
    print(f"[bench] {name}: {trials} trials, sampler {sampler}, scheduler {scheduler}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    run_study(cfg, log=lambda s: print(s, file=sys.stderr, flush=True), progress_every=120.0)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=cfg.default_storage)
    finished = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                      key=lambda t: (t.datetime_complete, t.number))
    clock, points = [], []
    total = 0.0
    for t in finished:
        total += spent(t)
        clock.append(total)
        points.append(list(t.values) if t.state == TrialState.COMPLETE else None)
    return {"wall_s": round(wall, 1), "complete": sum(p is not None for p in points),
            "pruned": sum(p is None for p in points),
            "children": sum(1 for t in finished if "lineage" in t.user_attrs),
            "train_flops_spent": total, "clock": clock, "points": points, "objectives": cfg.objectives,
            "scheduler": scheduler, "sampler": sampler}


def main(argv: list[str] | None = None) -> int:
    from growsearch.report.hypervolume import hv_space, hypervolume

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="the samplers' seed")
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--rungs", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--pbg-population", type=int, default=16)
    ap.add_argument("--pbg-interval", type=int, default=1, help="epochs between boundaries")
    ap.add_argument("--pbg-quantile", type=float, default=0.5)
    ap.add_argument("--pbg-sampler", default="random")
    ap.add_argument("--pbg-trials", type=int, default=None,
                    help="PBG's trial budget, members and children (default 2 x --trials: children are cheap; compare by FLOPs)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the studies (default: a new temporary one)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="gs_cost_live"))
    plans = {
        "nsga2_full": ({"name": "none"}, "nsga2"),
        "random_full": ({"name": "none"}, "random"),
        "nsga2_moasha": ({"name": "moasha", "rungs": args.rungs, "reduction_factor": args.reduction_factor}, "nsga2"),
        "pbg": ({"name": "pbg", "population": args.pbg_population, "interval": args.pbg_interval,
                 "quantile": args.pbg_quantile}, args.pbg_sampler),
    }
    names = [REFERENCE, *[s for s in args.strategies if s != REFERENCE]]
    runs = {n: run(n, *plans[n], args, work, (args.pbg_trials or 2 * args.trials) if n == "pbg" else None) for n in names}
    objectives = runs[REFERENCE]["objectives"]
    every = [p for r in runs.values() for p in r["points"] if p is not None]
    space = hv_space(np.asarray(every, dtype=float), objectives)

    def curve(r: dict[str, Any]) -> list[float]:
        out, done = [], []
        for p in r["points"]:
            if p is not None:
                done.append(p)
            out.append(hypervolume(np.asarray(done, dtype=float), objectives, space=space) if done else 0.0)
        return out

    ref = runs[REFERENCE]
    target, full = curve(ref)[-1], ref["train_flops_spent"]
    out: dict[str, Any] = {"study": "studies/quickstart.yaml", "trials": args.trials, "seed": args.seed,
                           "pbg_trials": args.pbg_trials or 2 * args.trials,
                           "concurrent": args.concurrent, "target_hv": round(target, 5), "full_train_flops": full,
                           "target_rule": f"hypervolume of {REFERENCE}'s COMPLETE trials after its {args.trials} trials",
                           "clock_rule": "training FLOPs spent in finishing order, prefix-cache savings excluded",
                           "goal": {"ratio_vs_full_at_most": GOAL}, "strategies": {}}
    for n, r in runs.items():
        hv = curve(r)
        hit = next((c for c, h in zip(r["clock"], hv, strict=True) if h >= target - 1e-12), None)
        out["strategies"][n] = {
            "sampler": r["sampler"], "scheduler": r["scheduler"], "wall_s": r["wall_s"], "complete": r["complete"],
            "pruned": r["pruned"], "children": r["children"], "train_flops_spent": r["train_flops_spent"],
            "train_flops_ratio_vs_full": round(r["train_flops_spent"] / full, 4) if full else None,
            "hv_final": round(hv[-1], 5) if hv else 0.0,
            "flops_to_target": hit, "ratio_vs_full": round(hit / full, 4) if hit is not None and full else None,
            "hv_vs_train_flops": [[round(c), round(h, 5)] for c, h in zip(r["clock"], hv, strict=True)],
        }
    out["goal"]["met_by"] = [n for n, s in out["strategies"].items()
                             if s["ratio_vs_full"] is not None and s["ratio_vs_full"] <= GOAL]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
