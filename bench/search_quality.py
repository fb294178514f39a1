"""Search quality: hypervolume of (dev EER, parameters, FLOPs) after N trials; prints JSON.

NSGA-II and TPE against random search on the quickstart study (real training on the
generated corpus, tiny LC-GRNN), several sampler seeds, one Ray instance for all runs.
The hypervolume uses :func:`growsearch.report.hypervolume.hypervolume` at one fixed
reference point for every run: EER 1.0, and 4x the baseline model's parameters and
FLOPs (points beyond it add nothing). Small by default, so differences between samplers
are within noise; raise ``--trials``/``--seeds`` on a bigger machine. Usage::

    python bench/search_quality.py [--trials 8] [--seeds 0 1] [--samplers nsga2 tpe random]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--samplers", nargs="+", default=["nsga2", "tpe", "random"])
    args = ap.parse_args(argv)

    import ray

    from growsearch.backbones import create_backbone
    from growsearch.metrics.cost import count_flops, count_params
    from growsearch.report.front import Objective
    from growsearch.report.hypervolume import hypervolume
    from growsearch.search.runner import run_study
    from growsearch.search.study import Budget, SamplerConfig, load_study_config

    base = load_study_config(ROOT / "studies" / "quickstart.yaml")
    model = create_backbone(base.train.model.backbone, base.train.model.preset)
    seconds = base.train.data.clip_samples / 16000
    p0, f0 = count_params(model)["total"], count_flops(model, seconds)
    objectives = [Objective(o.name, o.direction) for o in base.objectives]
    ref_by_name = {"dev_eer": 1.0, "params": 4.0 * p0, "flops": 4.0 * f0}
    reference = [ref_by_name[o.name] for o in objectives]
    work = Path(tempfile.mkdtemp(prefix="gs_quality"))
    url = f"sqlite:///{work}/quality.db"

    runs: dict[str, dict[str, Any]] = {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        for sampler in args.samplers:
            for seed in args.seeds:
                name = f"{sampler}_s{seed}"
                cfg = base.model_copy(update={
                    "name": name, "outputs": str(work / name), "budget": Budget(trials=args.trials), "reference": (),
                    "sampler": SamplerConfig(name=sampler, seed=seed, population_size=4),
                })
                t0 = time.perf_counter()
                run_study(cfg, storage_url=url, log=lambda s: None, progress_every=1e9)
                wall = time.perf_counter() - t0
                study = optuna.load_study(study_name=name, storage=url)
                done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
                values = np.asarray([t.values for t in done], dtype=float)
                runs[name] = {"sampler": sampler, "seed": seed, "complete": len(done), "wall_s": round(wall, 1),
                              "hypervolume": round(hypervolume(values, objectives, reference), 5),
                              "best_dev_eer": float(values[:, 0].min()) if len(done) else None}
    finally:
        ray.shutdown()
    by_sampler = {}
    for sampler in args.samplers:
        hv = [r["hypervolume"] for r in runs.values() if r["sampler"] == sampler]
        by_sampler[sampler] = {"mean": round(statistics.fmean(hv), 5), "min": min(hv), "max": max(hv)}
    rnd = by_sampler.get("random", {}).get("mean")
    print(json.dumps({
        "study": "studies/quickstart.yaml", "trials": args.trials, "seeds": args.seeds,
        "objectives": [o.name for o in objectives], "reference_point": reference,
        "baseline": {"params": p0, "flops": f0},
        "hypervolume_by_sampler": by_sampler,
        "ratio_to_random": {s: round(v["mean"] / rnd, 3) for s, v in by_sampler.items()} if rnd else None,
        "runs": runs,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
