"""Per-trial overhead of the search machinery on trivial trials; prints JSON.

Three ways to run the same trivial objective (a few microseconds of arithmetic on the
sampled parameters), all measured in this run on this machine:

- ``optuna_ray_tasks``: a bare Optuna ask/tell loop dispatching one Ray task per trial;
- ``tune_optunasearch``: Ray Tune with its stock ``OptunaSearch`` (same space, same
  concurrency, ``reuse_actors=True``);
- ``growsearch``: :func:`growsearch.search.runner.run_study` (DB-backed searcher, SQLite
  study, heartbeats, progress callback, trial folders) with a trivial ``trial_fn``.

Per-trial overhead = (T(n_large) - T(n_small)) / (n_large - n_small): start-up (Ray
start, study creation) cancels out. Usage::

    python bench/search_overhead.py [--small 4] [--large 24]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def trivial_trial(config: Any, schedule: Any, *, out_dir: Any, on_epoch: Any = None, resume: bool = True,
                  prefix_cache: Any = None) -> dict[str, Any]:
    """A trial_fn with the signature of ``train()`` that does no training."""
    grown = sum(e.neurons or 0 for e in schedule.events if e.action == "grow")
    return {"status": "ok", "dev_eer": 0.5 / (1 + grown), "params": 1000 + grown, "flops": 2000.0 + grown}


def _objective_value(params: dict[str, Any]) -> tuple[float, float]:
    n = float(params.get("n_events", 0))
    return 0.5 / (1 + n), 1000 + n


def bench_optuna_ray_tasks(space: Any, n: int) -> float:
    import ray

    @ray.remote(num_cpus=1)
    def work(p: dict[str, Any]) -> tuple[float, float]:
        return _objective_value(p)

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=4),
                                storage=optuna.storages.RDBStorage(f"sqlite:///{tempfile.mkdtemp()}/o.db"))
    t0 = time.perf_counter()
    for _ in range(n):
        t = study.ask()
        space.define_by_run(t)
        study.tell(t, list(ray.get(work.remote(dict(t.params)))))
    return time.perf_counter() - t0


class _Define:
    """A picklable define-by-run function (OptunaSearch pickles it with its state)."""

    def __init__(self, space: Any) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.define_by_run(trial)


def bench_tune_optunasearch(space: Any, n: int, storage_dir: str) -> float:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict[str, Any]) -> None:
        eer, params = _objective_value(config)
        tune.report({"dev_eer": eer, "params": params})

    st = optuna.storages.RDBStorage(f"sqlite:///{tempfile.mkdtemp()}/t.db")
    search = OptunaSearch(space=_Define(space), metric=["dev_eer", "params"], mode=["min", "min"],
                          sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=4), storage=st,
                          study_name=f"b{n}")
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=n, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name=f"stock{n}", storage_path=storage_dir, verbose=0),
    )
    t0 = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - t0


def bench_growsearch(n: int, work: Path) -> tuple[float, float]:
    """Returns (tuning wall without Ray start/stop, full run_study wall)."""
    import ray

    from growsearch.search.runner import run_study
    from growsearch.search.study import Budget, load_study_config

    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    out = work / f"gs{n}"
    cfg = cfg.model_copy(update={"name": f"overhead{n}", "outputs": str(out), "budget": Budget(trials=n), "reference": ()})
    lines: list[str] = []
    t0 = time.perf_counter()
    summary = run_study(cfg, trial_fn=trivial_trial, log=lines.append, progress_every=1e9)
    total = time.perf_counter() - t0
    assert summary.complete == n, summary
    assert not ray.is_initialized()
    return total, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=4)
    ap.add_argument("--large", type=int, default=24)
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    import logging

    import ray

    from growsearch.search.space import load_space

    logging.getLogger("ray").setLevel(logging.ERROR)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=3)
    work = Path(tempfile.mkdtemp(prefix="gs_overhead"))
    res: dict[str, Any] = {"small": args.small, "large": args.large, "cpus": os.cpu_count()}

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        a = {n: bench_optuna_ray_tasks(space, n) for n in (args.small, args.large)}
        b = {n: bench_tune_optunasearch(space, n, str(work / "ray")) for n in (args.small, args.large)}
    finally:
        ray.shutdown()
    # growsearch starts and stops its own Ray each run: T(large) - T(small) still cancels it
    c = {n: bench_growsearch(n, work)[0] for n in (args.small, args.large)}
    d = args.large - args.small

    def per(x: dict[int, float]) -> float:
        return (x[args.large] - x[args.small]) / d

    res["seconds"] = {
        "optuna_ray_tasks": {str(k): round(v, 3) for k, v in a.items()},
        "tune_optunasearch": {str(k): round(v, 3) for k, v in b.items()},
        "growsearch": {str(k): round(v, 3) for k, v in c.items()},
    }
    res["per_trial_s"] = {"optuna_ray_tasks": round(per(a), 4), "tune_optunasearch": round(per(b), 4), "growsearch": round(per(c), 4)}
    res["ratio_growsearch_vs_tune_optunasearch"] = round(per(c) / per(b), 3) if per(b) > 0 else None
    res["ratio_growsearch_vs_optuna_ray_tasks"] = round(per(c) / per(a), 3) if per(a) > 0 else None
    res["startup_s_growsearch"] = round(c[args.small] - args.small * per(c), 3)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
