"""Simulated workers and growth-aware MOASHA on a GrowBench table (growsearch.search.simulate_asha),
and ``bench/search_cost.py``'s JSON: fast, on a hand-made table over GrowBench's own space whose
curves are a deterministic function of the schedule (as tests/test_simulate.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState

from growsearch.report.front import load_study_data
from growsearch.schedule import GrowthSchedule
from growsearch.search.attrs import TRIAL_CURVES, TRIAL_PRUNED, TRIAL_RUNGS
from growsearch.search.moasha import RungPoint, decide, value_at_rung
from growsearch.search.runner import sampler_for
from growsearch.search.schedulers import MoashaConfig
from growsearch.search.simulate import FORMAT, row_key, simulate, table_from_data
from growsearch.search.simulate_asha import simulate_asha, simulate_asha_study
from growsearch.search.space import load_space
from growsearch.search.study import SamplerConfig

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "growbench.yaml"
OBJ = ["dev_eer", "params", "train_flops"]
EPOCHS = 6
MOASHA = MoashaConfig(rungs=(2, 4), reduction_factor=2.0, min_epochs_after_growth=1)


def _result(sched: GrowthSchedule) -> dict[str, Any]:
    """Distinct per-epoch costs and a falling dev EER curve, both from the schedule's hash."""
    h = int(hashlib.sha256(json.dumps(sched.to_dict(), sort_keys=True).encode()).hexdigest(), 16)
    grown = sum(e.neurons or 0 for e in sched.events if e.action == "grow")
    shrunk = any(e.action == "shrink" for e in sched.events)
    per_epoch = 1e8 + 1e7 * grown + (h % 997) * 1e3  # distinct: no two trials reach a rung at the same time
    cum = [per_epoch * (e + 1) for e in range(EPOCHS)]
    start = 0.3 + (h % 89) / 500.0
    curve = [start - 0.01 * e * ((h >> 8) % 5) for e in range(EPOCHS)]
    return {"dev_eer": curve[-1], "eval_eer": 0.3, "flops": 1e5, "params": 1000 + (0 if shrunk else 50 * grown),
            "train_flops": cum[-1], "dev_eer_curve": curve, "train_flops_curve": cum}


def _table() -> dict[str, Any]:
    space = load_space(SPACE, epochs=EPOCHS)
    grid = space.grid()
    scheds = {row_key(s): s for s in (space.decode(dict(zip(grid, c, strict=True))) for c in itertools.product(*grid.values()))}
    rows = [{"schedule": json.loads(k), "reference": None, "seeds": {"0": _result(s)}} for k, s in sorted(scheds.items())]
    base = GrowthSchedule.empty()
    rows.append({"schedule": json.loads(row_key(base)), "reference": "baseline", "seeds": {"0": _result(base)}})
    return {"format": FORMAT, "provenance": {"seeds": [0], "command": "hand-made"}, "space": yaml.safe_load(SPACE.read_text()),
            "epochs": EPOCHS, "rows": rows}


@pytest.fixture(scope="module")
def table() -> Any:
    return table_from_data(_table())


def _sampler(table: Any, name: str = "random", seed: int = 3) -> Any:
    return sampler_for(SamplerConfig(name=name, seed=seed, population_size=4), table.space, 30)


def test_one_worker_without_a_scheduler_is_the_plain_simulator(table: Any) -> None:
    a = simulate(table, _sampler(table), objectives=OBJ, directions=["minimize"] * 3, trials=12, seed="0")
    b = simulate_asha(table, _sampler(table), objectives=OBJ, directions=["minimize"] * 3, trials=12, seed="0", workers=1)
    assert [(t.key, t.values, t.clock) for t in a] == [(t.key, t.values, t.clock) for t in b]
    assert all(t.state == "COMPLETE" for t in b)


def test_simulated_moasha_stops_exactly_when_decide_says_and_charges_up_to_the_rung(table: Any) -> None:
    study, run = simulate_asha_study(table, _sampler(table), objectives=OBJ, directions=["minimize"] * 3, trials=30,
                                     seed="0", workers=2, scheduler=MOASHA)
    assert len(run) == 30
    rows = {t.number: table.rows[t.key]["seeds"]["0"] for t in run}
    scheds = {t.number: table.rows[t.key]["schedule"] for t in run}
    # Replay the rung decisions independently: per rung, the trials in the order they reached it.
    by_number = {t.number: t for t in run}
    stops = 0
    for rung in MOASHA.rungs or ():
        reached = [t for t in run if t.rung is None or t.rung >= rung]
        reached.sort(key=lambda t: t.start + rows[t.number]["train_flops_curve"][rung - 1])
        seen: list[RungPoint] = []
        for t in reached:
            res = rows[t.number]
            eer = value_at_rung(res["dev_eer_curve"], rung)
            assert eer is not None
            me = RungPoint(t.number, scheds[t.number], eer, (float(res["params"]), float(res["train_flops"])))
            d = decide(me, seen, rung=rung, reduction_factor=MOASHA.reduction_factor,
                       min_epochs_after_growth=MOASHA.min_epochs_after_growth)
            seen.append(me)
            assert d.stop == (t.rung == rung), (t.number, rung, d.reason)
            stops += d.stop
            assert (TRIAL_RUNGS.get(study.trials[t.number]) or {}).get(str(rung)) == eer
    pruned = [t for t in run if t.state == "PRUNED"]
    assert stops == len(pruned) > 0 and any(t.state == "COMPLETE" for t in run)
    for t in run:  # charges: a stopped trial only up to its rung
        res = rows[t.number]
        expect = res["train_flops_curve"][t.rung - 1] if t.state == "PRUNED" else res["train_flops"]
        assert t.spent == expect and t.end == pytest.approx(t.start + expect)
        if t.state == "PRUNED":
            assert t.spent < res["train_flops"] and t.values is None and t.decision is not None
    # the clock: all FLOPs spent by then (running trials included); at the end, the sum of the charges
    assert [t.clock for t in run] == sorted(t.clock for t in run)
    assert run[-1].clock == pytest.approx(sum(t.spent for t in run))
    assert by_number[run[0].number].clock >= run[0].spent


def test_pruned_trials_are_told_as_the_live_searcher_does_and_stay_off_the_front(table: Any) -> None:
    study, run = simulate_asha_study(table, _sampler(table, "nsga2"), objectives=OBJ, directions=["minimize"] * 3,
                                     trials=30, seed="0", workers=2, scheduler=MOASHA)
    pruned = {t.number: t for t in run if t.state == "PRUNED"}
    assert pruned
    for n, t in pruned.items():
        ft = study.trials[n]
        assert ft.state == TrialState.PRUNED and ft.values is None
        info = TRIAL_PRUNED.get(ft)
        assert info is not None and info["rung"] == t.rung and info["train_flops"] == t.spent
        assert len((TRIAL_CURVES.get(ft) or {})["dev_eer"]) == t.rung
    data = load_study_data(study, full=True)
    assert data.counts.get("PRUNED") == len(pruned)
    assert not {p.number for p in data.points} & set(pruned)
    assert {p.number for p in data.points} == {t.number for t in run if t.state == "COMPLETE"}


def test_flops_budget_stops_new_trials(table: Any) -> None:
    run = simulate_asha(table, _sampler(table), objectives=OBJ, directions=["minimize"] * 3, trials=100, seed="0",
                        workers=2, scheduler=MOASHA, flops_budget=3e9)
    started_after = [t for t in run if t.start > 0 and sum(x.spent for x in run if x.end <= t.start) >= 3e9]
    assert not started_after and len(run) < 100


@pytest.mark.parametrize("prefix_reuse", [False, True])
def test_search_cost_json_has_its_keys(table: Any, tmp_path: Path, prefix_reuse: bool) -> None:
    import gzip

    path = tmp_path / "table.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(_table(), fh)
    spec = importlib.util.spec_from_file_location("search_cost", ROOT / "bench" / "search_cost.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.run(mod.argparse.Namespace(table=str(path), trials=8, seeds=2, workers=2, budget=1.5, max_trials=None,
                                         grid=16, rungs=[2, 4], reduction_factor=2.0, min_epochs_after_growth=1,
                                         pbg_population=4, pbg_boundaries=[2, 4], pbg_interval=1, pbg_quantile=0.25,
                                         pbg_min_epochs_after_growth=1, strategies=mod.DEFAULT_STRATEGIES, bootstrap=50,
                                         prefix_reuse=prefix_reuse))
    json.dumps(out)
    assert out["table_complete"] is None  # the hand-made table does not say how many schedules its grid has
    for key in ("target_hv", "full_train_flops", "reference_point", "ratio_vs_full_rule", "goal", "strategies", "moasha",
                "pbg"):
        assert key in out
    assert set(out["strategies"]) == {"nsga2_full", "random_full", "nsga2_moasha", "growth_full", "growth_moasha",
                                      "pbg_random"}
    assert out["pbg"]["population"] == 4 and out["pbg"]["boundaries"] == [2, 4]
    pbg = out["strategies"]["pbg_random"]
    assert pbg["scheduler"] == "pbg" and pbg["mean_complete_trials"] + pbg["mean_pruned_trials"] == 4 + pbg["mean_children"]
    for name, s in out["strategies"].items():
        if not s["built"]:
            continue
        for key in ("flops_to_target", "ratio_vs_full", "ratio_vs_full_ci95", "hv_vs_train_flops", "mean_pruned_trials",
                    "gain_at_goal_flops"):
            assert key in s, (name, key)
        assert len(s["hv_vs_train_flops"]) == 16
    assert out["strategies"]["nsga2_full"]["mean_pruned_trials"] == 0
    assert out["strategies"]["nsga2_full"]["flops_to_target"] is not None  # the reference reaches its own target
    assert out["prefix_reuse"] is prefix_reuse
    assert ("without_reuse" in out) is prefix_reuse
    assert all(("ratio_vs_full_without_reuse" in s) is prefix_reuse for s in out["strategies"].values())
    if prefix_reuse:  # the cache spares full NSGA-II some of its FLOPs
        assert out["full_train_flops"] < out["without_reuse"]["full_train_flops"]
