"""Training compute and front quality with and without the growth-aware MOASHA scheduler; prints JSON.

The quickstart study (real training on the generated corpus) runs twice with the same sampler
seed and trial budget: once with ``scheduler: none`` (every trial trains to its last epoch,
the baseline) and once with ``scheduler: {name: moasha, rungs: ..., reduction_factor: ...}``.
Reported per run: training FLOPs recorded (COMPLETE trials' ``train_flops`` plus what PRUNED
trials spent before they stopped), COMPLETE and PRUNED trials, wall time, and the hypervolume
of the COMPLETE trials' objective values, both runs normalised in one space (the nadir of
all their points), so the two numbers compare; then the ratios moasha / none. With a trial
budget, MOASHA's PRUNED trials count toward it: the run tries as many schedules for less
compute. The runs' proposals differ once a trial is stopped (the sampler sees other
histories), so one run pair is one sample. Progress goes to stderr. Usage::

    python bench/moasha_cost.py [--trials 12] [--rungs 2,4] [--reduction-factor 3] [--concurrent 2]
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


def run(scheduler: dict[str, Any], trials: int, concurrent: int, work: Path) -> dict[str, Any]:
    from growsearch.search.attrs import TRIAL_METRICS, TRIAL_PRUNED
    from growsearch.search.runner import run_study
    from growsearch.search.schedulers import parse_scheduler
    from growsearch.search.study import Budget, load_study_config

    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    name = f"moasha_{scheduler['name']}"
    sched = parse_scheduler(scheduler, "bench", epochs=cfg.epochs)
    cfg = cfg.model_copy(update={"name": name, "outputs": str(work / name), "budget": Budget(trials=trials),
                                 "scheduler": sched,
                                 "execution": cfg.execution.model_copy(update={"max_concurrent": concurrent})})
    print(f"[bench] {name}: {trials} trials", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    run_study(cfg, log=lambda s: print(s, file=sys.stderr, flush=True), progress_every=60.0)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=cfg.default_storage)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    flops = sum(float((TRIAL_METRICS.get(t) or {}).get("train_flops") or 0) for t in done)
    flops += sum(float((TRIAL_PRUNED.get(t) or {}).get("train_flops") or 0) for t in pruned)
    return {
        "wall_s": round(wall, 2),
        "complete": len(done),
        "pruned": len(pruned),
        "pruned_at_rung": sorted(int((TRIAL_PRUNED.get(t) or {}).get("rung") or 0) for t in pruned),
        "train_flops": flops,
        "values": [list(t.values) for t in done],
        "objectives": cfg.objectives,
    }


def main(argv: list[str] | None = None) -> int:
    from growsearch.report.hypervolume import hv_space, hypervolume

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--rungs", default="2,4", help="rungs in epochs trained, comma-separated")
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--concurrent", type=int, default=2)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gs_moasha"))
    rungs = [int(x) for x in args.rungs.split(",") if x.strip()]
    base = run({"name": "none"}, args.trials, args.concurrent, work)
    mo = run({"name": "moasha", "rungs": rungs, "reduction_factor": args.reduction_factor}, args.trials, args.concurrent, work)
    objectives = base["objectives"]
    space = hv_space(np.asarray(base["values"] + mo["values"], dtype=float), objectives)
    out: dict[str, Any] = {"study": "studies/quickstart.yaml", "trials": args.trials, "concurrent": args.concurrent,
                           "moasha_settings": {"rungs": rungs, "reduction_factor": args.reduction_factor}}
    for key, r in (("none", base), ("moasha", mo)):
        hv = hypervolume(np.asarray(r["values"], dtype=float), objectives, space=space)
        out[key] = {k: v for k, v in r.items() if k not in ("values", "objectives")} | {"hypervolume": round(hv, 4)}
    out["train_flops_ratio_moasha_vs_none"] = round(mo["train_flops"] / base["train_flops"], 4) if base["train_flops"] else None
    out["wall_ratio_moasha_vs_none"] = round(mo["wall_s"] / base["wall_s"], 4) if base["wall_s"] else None
    out["hypervolume_ratio_moasha_vs_none"] = (round(out["moasha"]["hypervolume"] / out["none"]["hypervolume"], 4)
                                               if out["none"]["hypervolume"] else None)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
