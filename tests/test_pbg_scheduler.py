"""The population-based-growth Tune scheduler and the searcher's gate, driven by hand as Tune
would (no Ray cluster): a real SQLite study file, the real decision and draw."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from growsearch.errors import ConfigError
from growsearch.schedule import GrowthSchedule
from growsearch.search.moasha import applied_prefix
from growsearch.search.objectives import Objective
from growsearch.search.pbg_tune import PbgScheduler
from growsearch.search.sampling import TrialSeededSampler
from growsearch.search.schedulers import PbgConfig
from growsearch.search.searcher import FINAL_KEY, PAYLOAD_KEY, StudySearcher
from growsearch.search.space import load_space
from growsearch.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 6


def _sched(*events: tuple[str, int, int]) -> GrowthSchedule:
    return GrowthSchedule.from_dict({"events": [{"point": p, "epoch": e, "neurons": n} for p, e, n in events]})


REFS = [("baseline", GrowthSchedule.empty()), ("a", _sched(("gru1", 1, 8))), ("b", _sched(("gru2", 1, 4))),
        ("c", _sched(("gru3", 1, 2)))]


def _costs(schedule: dict[str, Any]) -> dict[str, float]:
    """Final parameters of a schedule: the base plus what it grows (the decision only compares them)."""
    return {"params": 100.0 + sum(float(e.get("neurons") or 0) for e in schedule.get("events", []))}


def _setup(tmp_path: Path, *, budget: int = 8, population: int = 4) -> tuple[optuna.Study, StudySearcher, PbgScheduler]:
    study = optuna.create_study(study_name="p", storage=open_storage(f"sqlite:///{tmp_path}/study.db"),
                                directions=["minimize", "minimize"],
                                sampler=TrialSeededSampler(optuna.samplers.RandomSampler(seed=0), 0), load_if_exists=True)
    space = load_space(ROOT / "search_spaces" / "growbench_dropin.yaml", epochs=EPOCHS)
    searcher = StudySearcher(study, space, objectives=["dev_eer", "params"], budget_trials=budget, references=REFS, seed=1)
    searcher.resync()
    sched = PbgScheduler(PbgConfig(population=population, boundaries=(2,), quantile=0.5), searcher, space=space,
                         epochs=EPOCHS, objectives=[Objective(name="dev_eer"), Objective(name="params")], costs_of=_costs,
                         seed=0, budget_trials=budget, checkpoint_of=lambda n: tmp_path / f"{n:05d}" / "state.pt")
    searcher.may_ask = sched.may_ask
    return study, searcher, sched


def _epochs(sched: PbgScheduler, rid: str, eers: list[float], *, restored: int = 0) -> str:
    """Report epochs 0.. with these dev EERs (the first ``restored`` as restored); the last answer."""
    out = TrialScheduler.CONTINUE
    for e, v in enumerate(eers):
        out = sched.on_trial_result(None, SimpleNamespace(trial_id=rid),
                                    {"epoch": e, "dev_eer": v, "train_loss": 0.5, "params": 100, "train_flops": 1e6 * (e + 1),
                                     FINAL_KEY: False, **({"restored": 1} if e < restored else {})})
    return out


def _complete(searcher: StudySearcher, rid: str, eer: float, saved: float = 0.0) -> None:
    payload = {"status": "ok", "metrics": {"dev_eer": eer, "params": 100, "train_flops": 6e6, "train_flops_saved": saved},
               "curves": {}}
    searcher.on_trial_complete(rid, {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload)})


def test_the_loser_is_replaced_by_a_child_that_continues_a_better_model(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path)
    configs = {rid: searcher.suggest(rid) for rid in ("r0", "r1", "r2")}
    assert [c["reference"] for c in configs.values()] == ["baseline", "a", "b"]
    assert _epochs(sched, "r0", [0.5, 0.3]) == TrialScheduler.CONTINUE  # alone at the boundary
    assert _epochs(sched, "r1", [0.5, 0.2]) == TrialScheduler.CONTINUE  # behind the baseline only on cost: kept
    b_answer = _epochs(sched, "r2", [0.5, 0.6])
    assert b_answer == TrialScheduler.STOP, sched.exploits
    assert [(n, d.replace) for n, d in sched.exploits] == [(0, False), (1, False), (2, True)]
    trials = study.get_trials()
    by_ref = {t.user_attrs.get("reference"): t for t in trials}
    b = by_ref["b"]
    assert b.state == TrialState.PRUNED and b.values is None
    info = b.user_attrs["pruned"]
    assert info["scheduler"] == "pbg" and info["rung"] == 2 and info["parent"] == 0
    assert "replaced by a child of trial" in info["reason"] and info["curves"]["dev_eer"] == [0.5, 0.6]
    assert info["checkpoint"].endswith(f"{b.number:05d}/state.pt")
    child = info["child"]
    parent = trials[info["parent"]]
    assert child["lineage"] == {"scheduler": "pbg", "parent": parent.number, "boundary": 2, "replaces": b.number,
                                "generation": 1}
    assert applied_prefix(child["schedule"], 2) == applied_prefix(parent.user_attrs["schedule"], 2)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs.get("lineage") for t in waiting if "lineage" in t.user_attrs] == [child["lineage"]]

    # the population: the fourth member (reference c, enqueued first) is still proposed, then the child
    assert searcher.suggest("r3")["reference"] == "c"
    cfg = searcher.suggest("r4")
    assert isinstance(cfg, dict) and cfg["params"] == child["params"] and cfg["reference"] is None
    ft = study.get_trials()[cfg["trial_number"]]
    assert ft.user_attrs["schedule"] == child["schedule"] and ft.user_attrs["lineage"] == child["lineage"]
    # a child is not judged at or before the boundary it was born at (its restored epochs are its parent's)
    assert _epochs(sched, "r4", [0.5, 0.3, 0.9], restored=2) == TrialScheduler.CONTINUE
    assert "2" not in (study.get_trials()[cfg["trial_number"]].user_attrs.get("rungs") or {})
    assert not sched.may_ask()
    assert searcher.suggest("r5") is None  # trials still run: wait for a child
    for rid, eer in (("r0", 0.3), ("r1", 0.2), ("r3", 0.5)):
        _complete(searcher, rid, eer)
    _complete(searcher, "r4", 0.25, saved=2e6)
    assert searcher.suggest("r6") == Searcher.FINISHED and sched.ended and "population" in sched.ended
    # spent training FLOPs: what the cache spared the child is not spent
    assert searcher.spent_train_flops() == 4 * 6e6 - 2e6 + 2e6


def test_no_child_past_the_trial_budget(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path, budget=3, population=3)
    for rid in ("r0", "r1", "r2"):
        searcher.suggest(rid)
    _epochs(sched, "r0", [0.5, 0.3])
    _epochs(sched, "r1", [0.5, 0.2])
    assert _epochs(sched, "r2", [0.5, 0.6]) == TrialScheduler.CONTINUE  # a loser, but no room for a child
    assert not study.get_trials(states=(TrialState.PRUNED,))
    assert not [t for t in study.get_trials(states=(TrialState.WAITING,)) if "lineage" in t.user_attrs]


def test_a_child_the_killed_driver_did_not_enqueue_is_enqueued_once(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path)
    for rid in ("r0", "r1", "r2"):
        searcher.suggest(rid)
    _epochs(sched, "r0", [0.5, 0.3])
    _epochs(sched, "r1", [0.5, 0.2])
    real_enqueue = sched._enqueue
    sched._enqueue = lambda child: None  # type: ignore[method-assign]  # the driver dies right after the PRUNED write
    assert _epochs(sched, "r2", [0.5, 0.6]) == TrialScheduler.STOP
    assert not [t for t in study.get_trials(states=(TrialState.WAITING,)) if "lineage" in t.user_attrs]
    sched._enqueue = real_enqueue  # type: ignore[method-assign]
    _, _, again = _setup(tmp_path)  # the next session
    assert again.repair() == 1
    assert again.repair() == 0
    children = [t for t in study.get_trials(states=(TrialState.WAITING,)) if "lineage" in t.user_attrs]
    pruned = study.get_trials(states=(TrialState.PRUNED,))[0]
    assert len(children) == 1 and children[0].user_attrs["lineage"]["replaces"] == pruned.number


def test_a_pickled_scheduler_decides_nothing(tmp_path: Path) -> None:
    _, _, sched = _setup(tmp_path)
    copy = pickle.loads(pickle.dumps(sched))
    assert copy.searcher is None and copy.rungs == (2,)
    assert copy.on_trial_result(None, SimpleNamespace(trial_id="x"), {"epoch": 1, "dev_eer": 0.1}) == TrialScheduler.CONTINUE


def test_pbg_needs_the_prefix_cache_and_a_budget_that_holds_the_population(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from growsearch.search.runner import run_study
    from growsearch.search.study import load_study_config

    monkeypatch.delenv("GROWSEARCH_STORAGE", raising=False)
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(train=str(ROOT / "configs" / "quickstart.yaml"), space=str(ROOT / "search_spaces" / "growbench_dropin.yaml"),
                outputs=str(tmp_path / "out"), scheduler={"name": "pbg", "population": 6, "interval": 2})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({**data, "execution": {"prefix_reuse": False}}))
    with pytest.raises(ConfigError, match="prefix_reuse"):
        load_study_config(p)
    p.write_text(yaml.safe_dump(data))
    cfg = load_study_config(p)
    assert cfg.scheduler == PbgConfig(population=6, interval=2) and cfg.scheduler.resolved_boundaries(6) == (2, 4)
    with pytest.raises(ConfigError, match=r"scheduler.population: a population of 6 is larger than the trial budget"):
        run_study(cfg.with_overrides(trials=4))  # refused before anything starts
