"""The MOASHA Tune scheduler and the searcher's PRUNED bookkeeping, driven by hand as Tune would
(no Ray cluster): a real SQLite study file, the real decision."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from growsearch.schedule import GrowthSchedule
from growsearch.search.moasha_tune import MoashaScheduler
from growsearch.search.objectives import Objective
from growsearch.search.sampling import TrialSeededSampler
from growsearch.search.schedulers import MoashaConfig
from growsearch.search.searcher import FINAL_KEY, PAYLOAD_KEY, StudySearcher
from growsearch.search.space import load_space
from growsearch.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sched(*events: tuple[str, int, int]) -> GrowthSchedule:
    return GrowthSchedule.from_dict({"events": [{"point": p, "epoch": e, "neurons": n} for p, e, n in events]})


REFS = [("baseline", GrowthSchedule.empty()), ("a", _sched(("gru2", 1, 8))), ("b", _sched(("gru1", 1, 4))),
        ("late", _sched(("gru2", 3, 16)))]


def _costs(schedule: dict[str, Any]) -> dict[str, float]:
    """Final parameters of a schedule: the base plus what it grows (the decision only compares them)."""
    return {"params": 100.0 + sum(float(e.get("neurons") or 0) for e in schedule.get("events", []))}


def _setup(tmp_path: Path, *, budget: int = 8, flops: float | None = None) -> tuple[optuna.Study, StudySearcher, MoashaScheduler]:
    study = optuna.create_study(study_name="m", storage=open_storage(f"sqlite:///{tmp_path}/study.db"),
                                directions=["minimize", "minimize"],
                                sampler=TrialSeededSampler(optuna.samplers.RandomSampler(seed=0), 0), load_if_exists=True)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=5)
    searcher = StudySearcher(study, space, objectives=["dev_eer", "params"], budget_trials=budget, references=REFS,
                             seed=1, budget_train_flops=flops)
    searcher.resync()
    sched = MoashaScheduler(MoashaConfig(rungs=(2,), reduction_factor=2, min_epochs_after_growth=1), searcher, epochs=5,
                            objectives=[Objective(name="dev_eer"), Objective(name="params")], costs_of=_costs,
                            checkpoint_of=lambda n: tmp_path / f"{n:05d}" / "checkpoint" / "state.pt")
    return study, searcher, sched


def _epochs(sched: MoashaScheduler, rid: str, eers: list[float]) -> str:
    """Report epochs 0.. with these dev EERs; the scheduler's last answer."""
    out = TrialScheduler.CONTINUE
    for e, v in enumerate(eers):
        out = sched.on_trial_result(None, SimpleNamespace(trial_id=rid),
                                    {"epoch": e, "dev_eer": v, "train_loss": 0.5, "params": 100, "train_flops": 1e6 * (e + 1),
                                     FINAL_KEY: False})
    return out


def test_a_settled_loser_is_pruned_with_its_rung_and_curve(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path)
    configs = {rid: searcher.suggest(rid) for rid in ("r0", "r1", "r2", "r3")}
    assert [c["reference"] for c in configs.values()] == ["baseline", "a", "b", "late"]
    assert _epochs(sched, "r0", [0.5, 0.3]) == TrialScheduler.CONTINUE  # alone at the rung
    assert _epochs(sched, "r1", [0.5, 0.2]) == TrialScheduler.CONTINUE  # better EER, larger: kept
    assert _epochs(sched, "r3", [0.5, 0.9]) == TrialScheduler.CONTINUE  # its growth comes later: not judged on this
    assert _epochs(sched, "r2", [0.5, 0.6]) == TrialScheduler.STOP  # dominated by the baseline
    by_ref = {t.user_attrs.get("reference"): t for t in study.get_trials()}
    b = by_ref["b"]
    assert b.state == TrialState.PRUNED and b.values is None
    info = b.user_attrs["pruned"]
    assert info["rung"] == 2 and info["epoch"] == 1 and info["scheduler"] == "moasha" and info["kept"] == [0]
    assert "0.6000" in info["reason"] and "trial 0" in info["reason"] and info["train_flops"] == 2e6
    assert info["curves"]["dev_eer"] == [0.5, 0.6] == b.user_attrs["curves"]["dev_eer"]
    assert info["checkpoint"].endswith(f"{b.number:05d}/checkpoint/state.pt")
    assert {t.user_attrs.get("reference"): t.user_attrs.get("rungs") for t in study.get_trials()} == {
        "baseline": {"2": 0.3}, "a": {"2": 0.2}, "late": {"2": 0.9}, "b": {"2": 0.6}}
    assert [(n, d.stop) for n, d in sched.decisions] == [(0, False), (1, False), (3, False), (2, True)]
    # Tune then ends the trial: nothing more is recorded, it is not re-enqueued
    searcher.on_trial_complete("r2", {"epoch": 1, FINAL_KEY: False})
    assert study.get_trials()[b.number].state == TrialState.PRUNED
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert searcher.n_pruned == 1 and searcher.spent_train_flops() == 2e6
    # a later rung-less report or a final one never decides
    assert sched.on_trial_result(None, SimpleNamespace(trial_id="r1"), {"epoch": 2, "dev_eer": 0.1}) == TrialScheduler.CONTINUE
    # a second session reruns the interrupted trials, never the PRUNED one
    assert searcher.close("session over") == 3
    _, again, _ = _setup(tmp_path)
    again.resync()
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["reference"] for t in waiting) == ["a", "baseline", "late"]


def test_pruned_trials_count_toward_the_trial_budget(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path, budget=4)
    for rid in ("r0", "r1", "r2", "r3"):
        searcher.suggest(rid)
    _epochs(sched, "r0", [0.5, 0.3])
    _epochs(sched, "r1", [0.5, 0.2])
    assert _epochs(sched, "r2", [0.5, 0.6]) == TrialScheduler.STOP
    for rid, eer in (("r0", 0.3), ("r1", 0.2), ("r3", 0.4)):
        payload = {"status": "ok", "metrics": {"dev_eer": eer, "params": 100, "train_flops": 5e6}, "curves": {}}
        searcher.on_trial_complete(rid, {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload)})
    assert searcher.suggest("r9") == Searcher.FINISHED  # 3 COMPLETE + 1 PRUNED = 4
    assert searcher.spent_train_flops() == 3 * 5e6 + 2e6


def test_the_training_flops_budget_stops_proposals(tmp_path: Path) -> None:
    study, searcher, _ = _setup(tmp_path, budget=50, flops=1e7)
    searcher.suggest("r0")
    payload = {"status": "ok", "metrics": {"dev_eer": 0.3, "params": 100, "train_flops": 1.2e7}, "curves": {}}
    assert searcher.suggest("r1") is not None and not searcher.flops_budget_reached
    searcher.on_trial_complete("r0", {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload)})
    assert searcher.flops_budget_reached
    assert searcher.suggest("r2") is None  # r1 still runs: wait, then finish
    payload["metrics"]["dev_eer"] = 0.2
    searcher.on_trial_complete("r1", {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload)})
    assert searcher.suggest("r3") == Searcher.FINISHED
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2 == len(study.get_trials()) - 2  # 2 references left waiting


def test_a_pickled_scheduler_decides_nothing(tmp_path: Path) -> None:
    """Tune pickles its scheduler with the experiment: the copy carries the settings only."""
    _, _, sched = _setup(tmp_path)
    copy = pickle.loads(pickle.dumps(sched))
    assert copy.rungs == (2,) and copy.searcher is None
    assert copy.on_trial_result(None, SimpleNamespace(trial_id="x"), {"epoch": 1, "dev_eer": 0.9}) == TrialScheduler.CONTINUE
