"""Simulated population-based growth (growsearch.search.simulate_pbg) on the shipped GrowBench table:
lineage, charges, the ``pruned`` attr, the population, determinism. Fast: no training, in-memory Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from growsearch.search.attrs import TRIAL_CURVES, TRIAL_LINEAGE, TRIAL_PRUNED, TRIAL_RUNGS, TRIAL_SCHEDULE
from growsearch.search.moasha import applied_prefix
from growsearch.search.runner import sampler_for
from growsearch.search.schedulers import PbgConfig
from growsearch.search.simulate import load_table
from growsearch.search.simulate_pbg import simulate_pbg, simulate_pbg_study
from growsearch.search.study import SamplerConfig

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "growbench" / "lcgrnn_bench.json.gz"
OBJ = ["dev_eer", "params", "train_flops"]
# every epoch a boundary and half the models replaced: many children, grandchildren too, in a short study
PBG = PbgConfig(population=8, interval=1, quantile=0.5, min_epochs_after_growth=0)
SEED = 2


@pytest.fixture(scope="module")
def table() -> Any:
    return load_table(TABLE)


def _run(table: Any, *, trials: int = 40, config: PbgConfig = PBG, seed: int = SEED) -> Any:
    sampler = sampler_for(SamplerConfig(name="random", seed=seed, population_size=None), table.space, trials)
    return simulate_pbg_study(table, sampler, objectives=OBJ, directions=["minimize"] * 3, trials=trials,
                              seed=table.seeds[seed % len(table.seeds)], workers=2, config=config, sampler_seed=seed)


@pytest.fixture(scope="module")
def study_run(table: Any) -> Any:
    return _run(table)


def test_the_population_is_the_sampler_s_and_then_only_children_train(table: Any, study_run: Any) -> None:
    study, run = study_run
    members = [t for t in run if t.birth is None]
    children = [t for t in run if t.birth is not None]
    assert len(members) == PBG.population and any(t.label == "baseline" for t in members)
    assert len(children) >= 4 and len(run) == len(members) + len(children)
    trained = {t.number for t in run}
    for ft in study.trials:  # every other trial of the study is a duplicate proposal, failed untrained
        assert ft.number in trained or ft.state == TrialState.FAIL
        assert (TRIAL_LINEAGE.get(ft) is not None) == (ft.number in {t.number for t in children})
    assert len({t.key for t in run}) == len(run)  # no schedule twice
    assert run[-1].clock == pytest.approx(sum(t.spent for t in run))


def test_a_child_continues_its_parent_s_prefix_and_costs_only_the_flops_after_its_boundary(table: Any,
                                                                                         study_run: Any) -> None:
    study, run = study_run
    by_number = {t.number: t for t in run}
    seed = table.seeds[SEED % len(table.seeds)]
    generations = []
    for t in run:
        cum = table.rows[t.key]["seeds"][seed]["train_flops_curve"]
        end = cum[t.rung - 1] if t.state == "PRUNED" else cum[-1]
        assert t.spent == pytest.approx(end - (cum[t.birth - 1] if t.birth else 0.0))
        assert t.end == pytest.approx(t.start + t.spent)
        if t.birth is None:
            continue
        lineage = TRIAL_LINEAGE.get(study.trials[t.number])
        assert lineage is not None and lineage["scheduler"] == "pbg"
        assert lineage["parent"] == t.parent and lineage["boundary"] == t.birth
        parent = TRIAL_SCHEDULE.get(study.trials[t.parent])
        mine = TRIAL_SCHEDULE.get(study.trials[t.number])
        assert parent is not None and mine is not None and mine != parent
        assert applied_prefix(mine, t.birth) == applied_prefix(parent, t.birth)
        replaced = by_number[lineage["replaces"]]
        assert replaced.state == "PRUNED" and replaced.rung == t.birth and t.start == replaced.end  # the freed worker
        parent_gen = (TRIAL_LINEAGE.get(study.trials[t.parent]) or {}).get("generation", 0)
        assert lineage["generation"] == parent_gen + 1
        generations.append(lineage["generation"])
        assert all(int(b) > t.birth for b in TRIAL_RUNGS.get(study.trials[t.number]) or {})  # never judged before
    assert max(generations) >= 2  # a child of a child


def test_a_replaced_member_is_pruned_with_the_pbg_attr(table: Any, study_run: Any) -> None:
    study, run = study_run
    seed = table.seeds[SEED % len(table.seeds)]
    pruned = [t for t in run if t.state == "PRUNED"]
    assert pruned
    for t in pruned:
        ft = study.trials[t.number]
        info = TRIAL_PRUNED.get(ft)
        assert ft.state == TrialState.PRUNED and ft.values is None and info is not None
        assert info["scheduler"] == "pbg" and info["rung"] == t.rung and info["epoch"] == t.rung - 1
        assert info["parent"] == t.exploit.parent and t.exploit.replace and info["parent"] in t.exploit.top
        child = next(c for c in study.trials if (TRIAL_LINEAGE.get(c) or {}).get("replaces") == t.number)
        assert info["child"]["lineage"] == TRIAL_LINEAGE.get(child) and info["child"]["schedule"] == TRIAL_SCHEDULE.get(child)
        assert info["child"]["params"] == child.params
        assert info["reason"] == t.exploit.reason
        cum = table.rows[t.key]["seeds"][seed]["train_flops_curve"]
        # as the live scheduler records it: the schedule's FLOPs up to the boundary, and the part a
        # child inherited (restored, not trained); what it spent is the difference
        assert info["train_flops"] == cum[t.rung - 1]
        assert info["train_flops_saved"] == (cum[t.birth - 1] if t.birth else 0.0)  # a child's restored prefix
        assert info["train_flops"] - info["train_flops_saved"] == t.spent
        assert len((TRIAL_CURVES.get(ft) or {})["dev_eer"]) == t.rung
        assert str(t.rung) in (TRIAL_RUNGS.get(ft) or {})


def test_deterministic_for_a_seed(table: Any, study_run: Any) -> None:
    again = simulate_pbg(table, sampler_for(SamplerConfig(name="random", seed=SEED, population_size=None), table.space, 40),
                         objectives=OBJ, directions=["minimize"] * 3, trials=40, seed=table.seeds[SEED % len(table.seeds)],
                         workers=2, config=PBG, sampler_seed=SEED)
    assert [(t.number, t.key, t.state, t.spent) for t in again] == [(t.number, t.key, t.state, t.spent)
                                                                      for t in study_run[1]]


def test_the_trial_budget_counts_children_and_then_keeps_members(table: Any) -> None:
    # trials = population: a child started early takes a member's place; once 8 trials started, a
    # member that would be replaced is kept (no child could start)
    study, run = _run(table, trials=8)
    assert len(run) == 8
    children = {t.number for t in run if t.birth is not None}
    replaced = {TRIAL_LINEAGE.get(study.trials[c])["replaces"] for c in children}  # type: ignore[index]
    assert children and replaced == {t.number for t in run if t.state == "PRUNED"}
    last_start = max(t.start for t in run)
    assert all(t.end <= last_start for t in run if t.state == "PRUNED")


def test_the_flops_budget_stops_starts_and_a_late_child_waits(table: Any) -> None:
    budget = 8e9  # about 4 trials' worth: the population is not even complete
    sampler = sampler_for(SamplerConfig(name="random", seed=SEED, population_size=None), table.space, 40)
    study, run = simulate_pbg_study(table, sampler, objectives=OBJ, directions=["minimize"] * 3, trials=40, seed="0",
                                    workers=2, config=PBG, flops_budget=budget, sampler_seed=SEED)
    by_end = sorted(run, key=lambda t: t.end)
    for t in run:  # nothing starts once the FLOPs spent reach the budget
        spent_before = sum(x.spent for x in by_end if x.end <= t.start)
        assert spent_before < budget
    assert len([t for t in run if t.birth is None]) < PBG.population
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert all(TRIAL_LINEAGE.get(t) is not None for t in waiting)  # only children wait, never run
