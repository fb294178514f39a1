"""Search quality: hypervolume of (dev EER, parameters, FLOPs) after N trials; prints JSON.

NSGA-II and TPE against random search on the quickstart study (real training on the
generated corpus, tiny LC-GRNN), several sampler seeds, one Ray instance for all runs.
The hypervolume uses :func:`growsearch.report.hypervolume.hypervolume` at one fixed
reference point for every run: EER 1.0, and 4x the baseline model's parameters and
FLOPs (points beyond it add nothing). Small by default, so differences between samplers
are within noise; raise ``--trials``/``--seeds`` on a bigger machine. Usage::

    python bench/search_quality.py [--trials 8] [--seeds 0 1] [--samplers nsga2 tpe random]

With ``--table FILE`` (a GrowBench table, ``bench/growbench.py export``) nothing trains: each
sampler runs ``--seeds N`` simulated studies (sampler seeds 0..N-1; one number is a count
here) of ``--trials`` COMPLETE trials against the table (:mod:`growsearch.search.simulate`:
the live searcher's propose step, the study's sampler reseeded per trial), simulated seed
``s`` told the results of the table's training seed ``s mod (seeds in the table)``, so
samplers are compared paired. Objectives: the table's study objectives (dev EER, params,
training FLOPs); the reference point is fixed per table and printed (EER 0.5, 1.1x the
table's largest params and training FLOPs). Per sampler: ``hv_mean``, ``hv_ci95`` (bootstrap
over seeds), ``ratio_vs_random`` (mean HV / random's mean HV) with ``ratio_ci95`` (paired
bootstrap over seeds), ``hv_gain_mean`` and ``gain_ratio_vs_random`` with ``gain_ratio_ci95``
(the hypervolume the search added to the reference trials': the baseline alone, in every
study, dominates most of the box and squeezes plain ratios towards 1), and ``hv_vs_train_flops``: mean hypervolume once the cumulative
training FLOPs of a run reach each budget of a fixed grid (the simulated clock); ``oracle``: the
same numbers for the table's whole front (the ceiling no sampler can pass)::

    python bench/search_quality.py --table growbench/lcgrnn_bench.json.gz --trials 32 --seeds 30
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
    ap.add_argument("--samplers", nargs="+", default=None, help="default: nsga2 tpe random (live); random tpe nsga2 gp (table)")
    ap.add_argument("--table", default=None, help="a GrowBench table: simulate instead of training")
    ap.add_argument("--no-reference", action="store_true", help="table: do not start each study with the baseline")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--encoding", choices=["flat", "conditional"], default="flat",
                    help="table: propose from the table's space in this encoding (same schedules; grid/growth need flat)")
    args = ap.parse_args(argv)
    if args.table:
        print(json.dumps(simulated(args), indent=2))
        return 0
    args.samplers = args.samplers or ["nsga2", "tpe", "random"]

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


#: The fixed hypervolume reference point of a GrowBench table (objectives dev_eer, params, train_flops).
REFERENCE_RULE = "dev_eer 0.5 (chance); params and train_flops 1.1x the table's largest"


def reference_point(table: Any) -> list[float]:
    """:data:`REFERENCE_RULE` for a loaded table (``bench/search_cost.py`` uses it too)."""
    rows = [res for r in table.rows.values() for res in r["seeds"].values()]
    return [0.5, 1.1 * max(float(r["params"]) for r in rows), 1.1 * max(float(r["train_flops"]) for r in rows)]


def _oracle_hv(table: Any, seed: str, names: list[str], objectives: list[Any], reference: list[float],
               refs: tuple[str, ...]) -> tuple[float, float]:
    """The hypervolume of all the table's rows for ``seed``, and what it adds to the reference rows'."""
    from growsearch.report.hypervolume import hypervolume_history

    rows = [r for r in table.rows.values() if seed in r["seeds"]]
    every = np.asarray([[float(r["seeds"][seed][n]) for n in names] for r in rows], dtype=float)
    base = [r for r in rows if r.get("reference") in refs]
    hv_all = float(hypervolume_history(every, objectives, reference)[-1])
    hv_base = float(hypervolume_history(np.asarray([[float(r["seeds"][seed][n]) for n in names] for r in base], dtype=float),
                                         objectives, reference)[-1]) if base else 0.0
    return hv_all, hv_all - hv_base


def simulated(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--table`` mode (see the module docstring)."""
    import warnings

    from growsearch.report.hypervolume import hypervolume_history
    from growsearch.search.objectives import Objective
    from growsearch.search.runner import sampler_for
    from growsearch.search.simulate import load_table, simulate
    from growsearch.search.study import SamplerConfig

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*sampled independently.*")
    from growsearch.search.space import parse_space

    table = load_table(args.table)
    space = table.space if args.encoding == "flat" else parse_space(
        {**table.data["space"], "encoding": args.encoding}, "table space", epochs=table.epochs)
    seeds = list(range(args.seeds[0])) if len(args.seeds) == 1 else list(args.seeds)
    samplers = args.samplers or (["random", "tpe", "nsga2", "gp", "growth"] if args.encoding == "flat" else ["random", "tpe", "nsga2", "gp"])
    if "random" not in samplers:
        samplers = ["random", *samplers]
    names = ["dev_eer", "params", "train_flops"]
    objectives = [Objective(name=n) for n in names]
    rows = [res for r in table.rows.values() for res in r["seeds"].values()]
    reference = reference_point(table)
    per_trial_flops = sorted(float(r["train_flops"]) for r in rows)
    median = per_trial_flops[len(per_trial_flops) // 2]
    budgets = [median * args.trials * f for f in (0.125, 0.25, 0.5, 0.75, 1.0)]
    refs = () if args.no_reference else ("baseline",)
    hv: dict[str, np.ndarray] = {}
    gain: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for name in samplers:
        finals, at_budget, gains = [], [], []
        for seed in seeds:
            sampler = sampler_for(SamplerConfig(name=name, seed=seed, population_size=None), space, args.trials)
            run = simulate(table, sampler, objectives=names, directions=["minimize"] * 3, trials=args.trials,
                           seed=table.seeds[seed % len(table.seeds)], references=refs, space=space)
            values = np.asarray([t.values for t in run], dtype=float)
            clock = np.asarray([t.clock for t in run], dtype=float)
            hist = hypervolume_history(values, objectives, reference)
            # what the search added to the reference trials (the baseline alone is in every study)
            base = float(hist[len(refs) - 1]) if refs and len(hist) >= len(refs) else 0.0
            finals.append(float(hist[-1]) if len(hist) else 0.0)
            gains.append((float(hist[-1]) if len(hist) else 0.0) - base)
            at_budget.append([float(hist[clock <= b][-1]) if (clock <= b).any() else 0.0 for b in budgets])
        hv[name], curves[name], gain[name] = np.asarray(finals), np.asarray(at_budget), np.asarray(gains)
        print(f"search_quality: {name}: hv {hv[name].mean():.4f} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(seeds), size=(args.bootstrap, len(seeds)))
    out: dict[str, Any] = {}
    rnd = hv["random"]
    rg = gain["random"]
    for name in samplers:
        h, g = hv[name], gain[name]
        boot_hv = h[idx].mean(axis=1)
        boot_ratio = h[idx].mean(axis=1) / np.maximum(rnd[idx].mean(axis=1), 1e-300)
        out[name] = {
            "hv_mean": round(float(h.mean()), 5),
            "hv_ci95": [round(float(x), 5) for x in np.percentile(boot_hv, [2.5, 97.5])],
            "ratio_vs_random": round(float(h.mean() / rnd.mean()), 4),
            "ratio_ci95": [round(float(x), 4) for x in np.percentile(boot_ratio, [2.5, 97.5])],
            "hv_vs_train_flops": [round(float(x), 5) for x in curves[name].mean(axis=0)],
            "hv_gain_mean": round(float(g.mean()), 6),
            "gain_ratio_vs_random": round(float(g.mean() / max(rg.mean(), 1e-300)), 4),
            "gain_ratio_ci95": [round(float(x), 4) for x in np.percentile(
                g[idx].mean(axis=1) / np.maximum(rg[idx].mean(axis=1), 1e-300), [2.5, 97.5])],
        }
    # the ceiling: a sampler that knew the whole table (every schedule's result for the study's seed)
    oracle = np.asarray([_oracle_hv(table, table.seeds[s % len(table.seeds)], names, objectives, reference, refs)
                         for s in seeds])
    return {
        "table": str(args.table), "table_command": table.data["provenance"].get("command"),
        "trials": args.trials, "seeds": len(seeds), "objectives": names,
        "oracle": {"hv_mean": round(float(oracle[:, 0].mean()), 5),
                   "ratio_vs_random": round(float(oracle[:, 0].mean() / rnd.mean()), 4),
                   "hv_gain_mean": round(float(oracle[:, 1].mean()), 6),
                   "gain_ratio_vs_random": round(float(oracle[:, 1].mean() / max(rg.mean(), 1e-300)), 4),
                   "rule": "the hypervolume of every schedule of the table (its whole front) for each study's training "
                           "seed: no sampler can exceed it in any number of trials, so ratio_vs_random cannot exceed "
                           "oracle.ratio_vs_random"},
        "reference_point": reference,
        "reference_rule": REFERENCE_RULE,
        "references_in_each_study": list(refs), "encoding": args.encoding,
        "train_flops_budgets": budgets,
        "samplers": out,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
