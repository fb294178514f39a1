"""Training compute with and without shared-prefix reuse on the quickstart study; prints JSON.

The quickstart study (real training on the generated corpus) runs twice with the same
sampler seed, one trial at a time so both runs see the same proposals: once with
``execution.prefix_reuse: true`` (a trial starts from the longest training state the prefix
cache holds for its schedule: the baseline epochs before its first growth, or also a grown
phase it shares with an earlier trial) and once with it off. Reported: ``saved_fraction``,
the share of the study's training FLOPs that the cache saved (sum over COMPLETE trials of
``train_flops_saved`` / ``train_flops``); ``identical``, whether both runs proposed the same
schedules and reached the same objective values for each (reuse must not change results);
training FLOPs actually spent, epochs reused (and how many of them lie after a trial's first
growth, which the first-growth-only cache could not reuse), cache hits, wall time of each run.
Wall times are not comparable between the runs on a shared machine (and the first run also
generates the corpus); the FLOPs are. ``prefix_wait_s`` sums the seconds trials waited for a
prefix another running trial was training (``--concurrent`` above 1;
:mod:`growsearch.train.prefix_claims`); ``--prefix-wait-s 0`` turns the waiting off.

``--paper-pair`` adds two reference trials to the study (a separate measurement, not the
quickstart's): the paper's dropin (unfrozen) and plasticity schedules sized for the quickstart
model, which share their growth at epoch 2, so the plasticity trial starts from the state
after the dropin trial's grown epochs (what the first-growth-only cache could not reuse).
Usage::

    python bench/prefix_reuse.py [--trials 12] [--concurrent 1] [--paper-pair] [--prefix-wait-s S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from growsearch.search.attrs import TRIAL_METRICS, TRIAL_SCHEDULE

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


#: The paper's dropin (unfrozen) and plasticity schedules at the quickstart's size (6 epochs):
#: +8 units in GRU layer 2 after 2 baseline epochs; plasticity drops them again at epoch 4.
PAPER_GROW = {"point": "gru2", "epoch": 2, "neurons": 8, "form": "inplace", "init": "random", "freeze": "all",
              "optimizer_state": "fresh"}
PAPER_PAIR = {
    "pair-dropin": [PAPER_GROW],
    "pair-plasticity": [PAPER_GROW, {"point": "gru2", "epoch": 4, "action": "shrink", "rule": "appended"}],
}


def run(reuse: bool, trials: int, concurrent: int, work: Path, paper_pair: bool = False,
        wait_s: float | None = None) -> dict[str, Any]:
    from growsearch.schedule import GrowthSchedule
    from growsearch.search.runner import run_study
    from growsearch.search.study import Budget, Reference, load_study_config

    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    ex = cfg.execution.model_copy(update={"prefix_reuse": reuse, "max_concurrent": concurrent,
                                          **({} if wait_s is None else {"prefix_wait_s": wait_s})})
    name = f"reuse_{'on' if reuse else 'off'}"
    refs = cfg.reference
    if paper_pair:
        refs = (*refs, *(Reference(label=k, schedule=GrowthSchedule.of(v, label=k)) for k, v in PAPER_PAIR.items()))
    cfg = cfg.model_copy(update={"name": name, "outputs": str(work / name), "budget": Budget(trials=trials), "execution": ex,
                                 "reference": refs})
    lines: list[str] = []
    t0 = time.perf_counter()
    run_study(cfg, log=lines.append, progress_every=1e9)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=cfg.default_storage)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    metrics = [TRIAL_METRICS.get(t) or {} for t in done]
    total = sum(float(m.get("train_flops") or 0) for m in metrics)
    saved = sum(float(m.get("train_flops_saved") or 0) for m in metrics)
    reused = [int(m.get("prefix_epochs_reused") or 0) for m in metrics]
    train_s = sum(float(m.get("wall_s") or 0) for m in metrics)
    waited = sum(float(m.get("prefix_wait_s") or 0) for m in metrics)
    beyond = 0
    for t, n in zip(done, reused):
        events = (TRIAL_SCHEDULE.get(t) or {}).get("events") or []
        first = min((int(e["epoch"]) for e in events), default=cfg.epochs)
        beyond += max(0, n - first)
    return {
        "wall_s": round(wall, 2),
        "trial_train_wall_s": round(train_s, 2),
        "train_flops_if_no_reuse": total,
        "train_flops_spent": total - saved,
        "train_flops_saved": saved,
        "prefix_epochs_reused": sum(reused),
        "prefix_epochs_reused_after_first_growth": beyond,
        "cache_hits": sum(1 for n in reused if n > 0),
        "prefix_wait_s": round(waited, 2),
        "complete": len(done),
        "values": {json.dumps(t.params, sort_keys=True) if not t.user_attrs.get("reference") else t.user_attrs["reference"]: t.values for t in done},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12, help="COMPLETE trials per run (default: the quickstart's budget)")
    ap.add_argument("--concurrent", type=int, default=1)
    ap.add_argument("--paper-pair", action="store_true", help="add the paper's dropin + plasticity pair as reference trials")
    ap.add_argument("--prefix-wait-s", type=float, default=None,
                    help="execution.prefix_wait_s of the run with reuse (default: the study's; 0: a trial never waits "
                         "for a prefix another trial is training)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gs_prefix"))
    on = run(True, args.trials, args.concurrent, work, args.paper_pair, args.prefix_wait_s)
    off = run(False, args.trials, args.concurrent, work, args.paper_pair)
    common = set(on["values"]) & set(off["values"])
    same = all(on["values"][k] == off["values"][k] for k in common)
    identical = same and set(on["values"]) == set(off["values"]) and on["complete"] == off["complete"] > 0
    saved_fraction = round(on["train_flops_saved"] / on["train_flops_if_no_reuse"], 4) if on["train_flops_if_no_reuse"] else 0.0
    res = {
        "study": "studies/quickstart.yaml" + (" + the paper's dropin/plasticity pair as references" if args.paper_pair else ""),
        "trials": args.trials,
        "concurrent": args.concurrent,
        "prefix_wait_s": args.prefix_wait_s,
        "with_reuse": {k: v for k, v in on.items() if k != "values"},
        "without_reuse": {k: v for k, v in off.items() if k != "values"},
        "saved_fraction": saved_fraction,
        "identical": identical,
        "compute_saved_fraction": saved_fraction,
        "spent_ratio_with_vs_without": round(on["train_flops_spent"] / off["train_flops_spent"], 4) if off["train_flops_spent"] else None,
        "schedules_in_both_runs": len(common),
        "same_objective_values_where_both_ran": same,
    }
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
