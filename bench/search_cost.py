"""Compute per strategy: hypervolume against cumulative training FLOPs on GrowBench; prints JSON.

Issue 14, item 4 (the simulated part). Each strategy runs ``--seeds N`` simulated studies
(sampler seeds 0..N-1; simulated seed ``s`` sees the table's training seed ``s mod (seeds in
the table)``, so strategies are compared paired) with ``--workers`` asynchronous workers
(:mod:`growsearch.search.simulate_asha`: the live searcher's propose step, the study's
sampler, and for ``+ MOASHA`` the live scheduler's rung decision :func:`growsearch.search.moasha.decide`;
a stopped trial costs the FLOPs up to its rung and is PRUNED, out of every hypervolume).

Strategies: full-fidelity NSGA-II (the reference), random, NSGA-II + MOASHA, the growth
sampler, growth sampler + MOASHA, and population-based growth (``pbg_random``:
:mod:`growsearch.search.simulate_pbg`, ``--pbg-population`` members proposed by the random
sampler, then only children, each costing the FLOPs after its boundary; ``pbg_nsga2`` on
request: with NSGA-II's default population of ``trials / 3`` its members are its first,
random, generation, so it is ``pbg_random`` with other draws). PBG's defaults: 8 members,
quantile 0.25 (the study's), a boundary after every epoch (on GrowBench, 30 seeds: as good as
boundaries 2/4 at quantile 0.25 and clearly better at 0.5; docs/SEARCH_QUALITY.md). A PBG run
trains about ``population`` trials' worth of FLOPs and stops: it ends when nothing runs.

- **Target**: the mean (over seeds) hypervolume of full-fidelity NSGA-II after its first
  ``--trials`` trials. **Full compute** ``F``: the mean training FLOPs of those trials.
- Every run goes on until its training FLOPs reach ``--budget`` x ``F0`` (``F0`` = trials x
  the table's median training FLOPs of a trial, known before any run) or ``--max-trials``.
- ``hv_vs_train_flops``: the mean hypervolume (COMPLETE trials whose clock is at most the
  budget) on a common grid of training FLOPs; ``flops_to_target``: the first grid budget where
  it reaches the target (``null``: never within the budget); ``ratio_vs_full`` =
  ``flops_to_target / F`` (the fraction of full NSGA-II's 32-trial training FLOPs). CIs: a
  paired bootstrap over seeds (target, ``F`` and curves resampled together).

``--prefix-reuse`` runs every strategy, the reference included, with the simulated prefix
cache (:class:`growsearch.search.simulate_clock.PrefixLedger`: a trial starts from the deepest
state of its schedule another trial has trained by then, as ``execution.prefix_reuse`` does live,
without the live wait for a prefix still being trained), so ``ratio_vs_full`` compares equals;
``ratio_vs_full_without_reuse`` compares with full NSGA-II as it costs without the cache.

Hypervolume via :func:`growsearch.report.hypervolume.hypervolume_history` at the fixed reference
point of ``bench/search_quality.py --table`` (printed). Usage::

    python bench/search_cost.py --table growbench/lcgrnn_bench.json.gz --trials 32 --seeds 30
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)

#: name -> (sampler, scheduler: none, moasha or pbg); the first is the reference.
STRATEGIES: dict[str, tuple[str, str]] = {
    "nsga2_full": ("nsga2", "none"),
    "random_full": ("random", "none"),
    "nsga2_moasha": ("nsga2", "moasha"),
    "growth_full": ("growth", "none"),
    "growth_moasha": ("growth", "moasha"),
    "pbg_random": ("random", "pbg"),
    "pbg_nsga2": ("nsga2", "pbg"),
}
#: what runs unless --strategies says otherwise (pbg_nsga2 is pbg_random with other draws, see above)
DEFAULT_STRATEGIES = [s for s in STRATEGIES if s != "pbg_nsga2"]
REFERENCE = "nsga2_full"
GOAL = 0.40


def _search_quality() -> Any:
    spec = importlib.util.spec_from_file_location("search_quality", Path(__file__).with_name("search_quality.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _complete(table: Any) -> bool | None:
    """Whether every schedule of the table's grid (and the baseline) has a row with every seed
    (``None`` when the table does not say how many schedules its grid has)."""
    distinct = (table.data.get("grid") or {}).get("distinct")
    if not isinstance(distinct, int):
        return None
    full = sum(1 for r in table.rows.values() if all(s in r["seeds"] for s in table.seeds))
    return full >= distinct + 1


def _first_reach(curve: np.ndarray, grid: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(curve >= target - 1e-12)
    return float(grid[hit[0]]) if len(hit) else float("inf")


def _ci(samples: np.ndarray, nd: int = 4) -> list[float | None]:
    """The 95 % percentile interval; an end at "never reached" (infinite) is ``None``."""
    lo, hi = np.percentile(np.where(np.isfinite(samples), samples, 1e300), [2.5, 97.5])
    return [None if x >= 1e299 else round(float(x), nd) for x in (lo, hi)]


def _num(x: float, nd: int = 4) -> float | None:
    return None if not np.isfinite(x) else round(float(x), nd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="a GrowBench table (bench/growbench.py export)")
    ap.add_argument("--trials", type=int, default=32, help="full NSGA-II's trials that define the target")
    ap.add_argument("--seeds", type=int, default=30, help="simulated studies per strategy (sampler seeds 0..N-1)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=float, default=2.0, help="each run's training FLOPs, x trials x the median trial's")
    ap.add_argument("--max-trials", type=int, default=None, help="each run's trial cap (default 8 x trials)")
    ap.add_argument("--grid", type=int, default=128, help="points of the common FLOPs grid")
    ap.add_argument("--rungs", type=int, nargs="+", default=None, help="MOASHA rungs (epochs trained); default: grace 1")
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--min-epochs-after-growth", type=int, default=1)
    ap.add_argument("--pbg-population", type=int, default=8, help="pbg: members proposed by the sampler")
    ap.add_argument("--pbg-boundaries", type=int, nargs="+", default=None,
                    help="pbg: boundaries (epochs trained); default: --pbg-interval's")
    ap.add_argument("--pbg-interval", type=int, default=1, help="pbg: epochs between boundaries (without --pbg-boundaries)")
    ap.add_argument("--pbg-quantile", type=float, default=0.25, help="pbg: the share of models replaced and copied")
    ap.add_argument("--pbg-min-epochs-after-growth", type=int, default=1)
    ap.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES, choices=list(STRATEGIES))
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--prefix-reuse", action="store_true",
                    help="every strategy with the prefix cache (a trial starts from the deepest state of its schedule "
                         "another trial has trained); the reference is also run without it for ratio_vs_full_without_reuse")
    args = ap.parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from growsearch.report.hypervolume import hypervolume_history
    from growsearch.search.objectives import Objective
    from growsearch.search.runner import sampler_for
    from growsearch.search.schedulers import MoashaConfig, PbgConfig
    from growsearch.search.simulate import load_table
    from growsearch.search.simulate_asha import simulate_asha
    from growsearch.search.simulate_pbg import simulate_pbg
    from growsearch.search.study import SamplerConfig

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*sampled independently.*")
    sq = _search_quality()
    table = load_table(args.table)
    names = ["dev_eer", "params", "train_flops"]
    objectives = [Objective(name=n) for n in names]
    reference = sq.reference_point(table)
    moasha = MoashaConfig(rungs=tuple(args.rungs) if args.rungs else None, reduction_factor=args.reduction_factor,
                          min_epochs_after_growth=args.min_epochs_after_growth)
    pbg = PbgConfig(population=args.pbg_population, quantile=args.pbg_quantile,
                    boundaries=tuple(args.pbg_boundaries) if args.pbg_boundaries else None,
                    interval=None if args.pbg_boundaries else args.pbg_interval,
                    min_epochs_after_growth=args.pbg_min_epochs_after_growth)
    strategies = [REFERENCE, *[s for s in args.strategies if s != REFERENCE]]
    rows = sorted(float(res["train_flops"]) for r in table.rows.values() for res in r["seeds"].values())
    f0 = args.trials * rows[len(rows) // 2]
    budget = args.budget * f0
    grid = np.linspace(budget / args.grid, budget, args.grid)
    cap = args.max_trials or 8 * args.trials
    seeds = list(range(args.seeds))

    curves: dict[str, np.ndarray] = {}
    stats: dict[str, dict[str, list[float]]] = {}
    first_hv: list[float] = []  # the reference's HV after its first `trials` trials, per seed
    first_flops: list[float] = []  # ... and their training FLOPs
    plain_hv: list[float] = []  # with --prefix-reuse: the same without the cache
    plain_flops: list[float] = []

    def first_trials(run_: list[Any], seed: int) -> tuple[float, float]:
        """The hypervolume and training FLOPs of the reference's first ``trials`` trials."""
        first = sorted(run_, key=lambda t: (t.start, t.number))[: args.trials]
        if len(first) < args.trials or any(t.state != "COMPLETE" for t in first):
            raise SystemExit(f"search_cost: seed {seed}: the reference ran {len(first)} of {args.trials} trials "
                             f"within the budget; raise --budget")
        fv = np.asarray([t.values for t in first], dtype=float)
        return float(hypervolume_history(fv, objectives, reference)[-1]), float(sum(t.spent for t in first))
    t0 = time.perf_counter()
    for name in strategies:
        sampler_name, scheduler = STRATEGIES[name]
        per_seed = []
        st: dict[str, list[float]] = {"complete": [], "pruned": [], "pruned_flops_fraction": [], "spent": [],
                                      "children": []}
        for seed in seeds:
            sampler = sampler_for(SamplerConfig(name=sampler_name, seed=seed, population_size=None), table.space,
                                  args.trials)
            common: dict[str, Any] = {"objectives": names, "directions": ["minimize"] * 3, "trials": cap,
                                      "seed": table.seeds[seed % len(table.seeds)], "workers": args.workers,
                                      "flops_budget": budget}
            if scheduler == "pbg":
                run_ = simulate_pbg(table, sampler, config=pbg, sampler_seed=seed, prefix_reuse=args.prefix_reuse, **common)
            else:
                run_ = simulate_asha(table, sampler, scheduler=moasha if scheduler == "moasha" else None,
                                     prefix_reuse=args.prefix_reuse, **common)
            done = [t for t in run_ if t.state == "COMPLETE"]
            values = np.asarray([t.values for t in done], dtype=float).reshape(-1, len(names))
            clock = np.asarray([t.clock for t in done], dtype=float)
            hist = np.asarray(hypervolume_history(values, objectives, reference), dtype=float)
            per_seed.append([float(hist[clock <= g][-1]) if (clock <= g).any() else 0.0 for g in grid])
            spent = sum(t.spent for t in run_)
            st["complete"].append(len(done))
            st["pruned"].append(len(run_) - len(done))
            st["pruned_flops_fraction"].append(sum(t.spent for t in run_ if t.state == "PRUNED") / spent if spent else 0.0)
            st["spent"].append(spent)
            st["children"].append(sum(1 for t in run_ if getattr(t, "birth", None) is not None))
            if name == REFERENCE:
                hv, flops = first_trials(run_, seed)
                first_hv.append(hv)
                first_flops.append(flops)
                if args.prefix_reuse:  # the same study without the cache: what full NSGA-II costs without it
                    sampler = sampler_for(SamplerConfig(name=sampler_name, seed=seed, population_size=None), table.space,
                                          args.trials)
                    hv, flops = first_trials(simulate_asha(table, sampler, scheduler=None, **common), seed)
                    plain_hv.append(hv)
                    plain_flops.append(flops)
        curves[name] = np.asarray(per_seed)
        stats[name] = st
        print(f"search_cost: {name}: hv at budget {curves[name][:, -1].mean():.4f} ({time.perf_counter() - t0:.0f}s)",
              file=sys.stderr, flush=True)

    hv_first = np.asarray(first_hv)
    f_first = np.asarray(first_flops)
    target, full = float(hv_first.mean()), float(f_first.mean())
    base_row = table.baseline()
    baseline_hv = 0.0 if base_row is None else float(np.mean([hypervolume_history(
        np.asarray([[float(base_row["seeds"][table.seeds[s % len(table.seeds)]][n]) for n in names]]), objectives,
        reference)[-1] for s in seeds]))
    gap = target - baseline_hv
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(seeds), size=(args.bootstrap, len(seeds)))
    out: dict[str, Any] = {}
    for name in strategies:
        c = curves[name]
        mean = c.mean(axis=0)
        ftt = _first_reach(mean, grid, target)
        boot_ftt = np.asarray([_first_reach(c[i].mean(axis=0), grid, float(hv_first[i].mean())) for i in idx])
        boot_ratio = boot_ftt / f_first[idx].mean(axis=1)
        at_goal = int(np.searchsorted(grid, GOAL * full, side="right")) - 1  # the last grid point within 40 % of F
        hv_goal = c[:, at_goal] if at_goal >= 0 else np.zeros(len(seeds))
        st = stats[name]
        out[name] = {
            "built": True, "sampler": STRATEGIES[name][0], "scheduler": STRATEGIES[name][1],
            "flops_to_target": _num(ftt, 0), "flops_to_target_ci95": _ci(boot_ftt, 0),
            "ratio_vs_full": _num(ftt / full), "ratio_vs_full_ci95": _ci(boot_ratio),
            "target_reached_in_bootstrap": round(float(np.isfinite(boot_ftt).mean()), 3),
            **({"ratio_vs_full_without_reuse": _num(_first_reach(mean, grid, float(np.mean(plain_hv)))
                                                    / float(np.mean(plain_flops)))} if args.prefix_reuse else {}),
            "hv_at_budget": round(float(mean[-1]), 5),
            "hv_at_budget_ci95": _ci(c[idx, -1].mean(axis=1), 5),
            "hv_at_goal_flops": round(float(hv_goal.mean()), 5),
            "hv_at_goal_flops_vs_target": round(float(hv_goal.mean()) / target, 4),
            "gain_at_goal_flops": _num((float(hv_goal.mean()) - baseline_hv) / gap) if gap > 0 else None,
            "mean_complete_trials": round(float(np.mean(st["complete"])), 2),
            "mean_pruned_trials": round(float(np.mean(st["pruned"])), 2),
            "mean_children": round(float(np.mean(st["children"])), 2),
            "pruned_flops_fraction": round(float(np.mean(st["pruned_flops_fraction"])), 4),
            "mean_train_flops_spent": round(float(np.mean(st["spent"])), 0),
            "hv_vs_train_flops": [round(float(x), 5) for x in mean],
        }
    met = [n for n in strategies if out[n]["ratio_vs_full"] is not None and out[n]["ratio_vs_full"] <= GOAL]
    return {
        "table": str(args.table), "table_command": table.data["provenance"].get("command"),
        "table_seeds": table.seeds, "table_rows": len(table.rows),
        "table_complete": _complete(table),
        "trials": args.trials, "seeds": len(seeds), "workers": args.workers, "objectives": names,
        "prefix_reuse": args.prefix_reuse,
        **({"without_reuse": {
            "target_hv": round(float(np.mean(plain_hv)), 5), "full_train_flops": round(float(np.mean(plain_flops)), 0),
            "rule": "the reference strategy run again without the prefix cache; ratio_vs_full_without_reuse = the "
                    "FLOPs a strategy (with the cache) needs to reach this target_hv / this full_train_flops"}}
           if args.prefix_reuse else {}),
        "reference_point": reference, "reference_rule": sq.REFERENCE_RULE,
        "moasha": {"rungs": list(moasha.resolved_rungs(table.epochs)), "reduction_factor": moasha.reduction_factor,
                   "min_epochs_after_growth": moasha.min_epochs_after_growth},
        "pbg": {"population": pbg.population, "boundaries": list(pbg.resolved_boundaries(table.epochs)),
                "quantile": pbg.quantile, "min_epochs_after_growth": pbg.min_epochs_after_growth,
                "rule": "the first population trials proposed by the strategy's sampler, then only children: a "
                        "PRUNED (replaced) trial's child costs the training FLOPs after its boundary"},
        "target_hv": round(target, 5),
        "baseline_hv": round(baseline_hv, 5),
        "baseline_hv_rule": "mean over seeds of the hypervolume of the baseline row alone (each seed's training "
                            "seed): every study starts with it, so only target_hv - baseline_hv is left to find",
        "target_rule": f"mean over seeds of full-fidelity NSGA-II's hypervolume after its first {args.trials} trials",
        "target_hv_ci95": _ci(hv_first[idx].mean(axis=1), 5),
        "full_train_flops": round(full, 0),
        "full_train_flops_rule": f"mean over seeds of the training FLOPs of full-fidelity NSGA-II's first {args.trials} trials",
        "ratio_vs_full_rule": "flops_to_target / full_train_flops: the fraction of full NSGA-II's "
                              f"{args.trials}-trial training FLOPs a strategy needs for its mean HV to reach the target",
        "flops_grid": {"points": args.grid, "step": float(grid[0]), "budget": float(budget),
                       "budget_rule": f"{args.budget:g} x trials x the table's median training FLOPs of a trial"},
        "run_rule": f"each run starts trials until its training FLOPs reach the budget or {cap} trials (PRUNED count)",
        "goal": {"ratio_vs_full_at_most": GOAL, "met_by": met,
                 "goal_flops": round(GOAL * full, 0),
                 "hv_at_goal_flops_rule": f"mean HV at the last grid budget within {GOAL:.0%} of full_train_flops",
                 "gain_at_goal_flops_rule": "(hv_at_goal_flops - baseline_hv) / (target_hv - baseline_hv): the share "
                                            "of what the baseline leaves to find that a strategy finds with the goal's compute"},
        "strategies": out,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
