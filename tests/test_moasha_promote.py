"""MOASHA with ``promote: true``, driven by hand as Tune would (no Ray cluster): a trial stopped
at a rung is promoted once later trials at the rung are worse, and the promoted trial resumes
its checkpoint (a real SQLite study file, the real decision)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

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


def _sched(point: str, neurons: int) -> GrowthSchedule:
    return GrowthSchedule.from_dict({"events": [{"point": point, "epoch": 1, "neurons": neurons}]})


#: Every schedule grows before epoch 1 trains: all settled at rung 2, judged together.
REFS = [("baseline", GrowthSchedule.empty()), ("a", _sched("gru1", 8)), ("b", _sched("gru2", 4)),
        ("c", _sched("gru2", 16)), ("d", _sched("gru1", 12)), ("e", _sched("gru2", 20))]


def _costs(schedule: dict[str, Any]) -> dict[str, float]:
    return {"params": 100.0 + sum(float(e.get("neurons") or 0) for e in schedule.get("events", []))}


def _setup(tmp_path: Path, budget: int = 10) -> tuple[optuna.Study, StudySearcher, MoashaScheduler]:
    study = optuna.create_study(study_name="m", storage=open_storage(f"sqlite:///{tmp_path}/study.db"),
                                directions=["minimize", "minimize"],
                                sampler=TrialSeededSampler(optuna.samplers.RandomSampler(seed=0), 0), load_if_exists=True)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=5)
    searcher = StudySearcher(study, space, objectives=["dev_eer", "params"], budget_trials=budget, references=REFS, seed=1)
    searcher.resync()
    sched = MoashaScheduler(MoashaConfig(rungs=(2,), reduction_factor=2, promote=True), searcher, epochs=5,
                            objectives=[Objective(name="dev_eer"), Objective(name="params")], costs_of=_costs)
    return study, searcher, sched


def _epochs(sched: MoashaScheduler, rid: str, eers: list[float], *, restored: int = 0) -> str:
    out = TrialScheduler.CONTINUE
    for e, v in enumerate(eers):
        out = sched.on_trial_result(None, SimpleNamespace(trial_id=rid),
                                    {"epoch": e, "dev_eer": v, "params": 100, "train_flops": 1e6 * (e + 1), FINAL_KEY: False,
                                     **({"restored": 1} if e < restored else {})})
    return out


def test_a_stopped_trial_is_promoted_once_the_rung_fills_with_worse_ones(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path)
    assert [searcher.suggest(f"r{i}")["reference"] for i in range(6)] == ["baseline", "a", "b", "c", "d", "e"]
    assert _epochs(sched, "r0", [0.5, 0.3]) == TrialScheduler.CONTINUE
    assert _epochs(sched, "r1", [0.5, 0.2]) == TrialScheduler.CONTINUE
    assert _epochs(sched, "r2", [0.5, 0.6]) == TrialScheduler.STOP  # 3rd of 3: outside the best 1
    b = study.get_trials()[2]
    assert b.state == TrialState.PRUNED
    _epochs(sched, "r3", [0.5, 0.9])  # 4 at the rung: b is 3rd, the best 2 go on: not yet
    assert not sched.promotions
    _epochs(sched, "r4", [0.5, 0.95])
    assert not sched.promotions  # 5: the best 2 still
    _epochs(sched, "r5", [0.5, 0.97])  # 6: the best 3 go on, b among them: promoted
    assert [n for n, _ in sched.promotions] == [b.number]
    waiting = [t for t in study.get_trials(states=(TrialState.WAITING,))]
    assert len(waiting) == 1 and waiting[0].user_attrs["promoted_from"] == b.number
    assert waiting[0].user_attrs["requeued_from"] == b.number and waiting[0].user_attrs["reference"] == "b"

    # the promoted trial runs (not a duplicate of its PRUNED origin), resumes its checkpoint, and is
    # not judged again at the rung it was stopped at
    cfg = searcher.suggest("r6")
    assert isinstance(cfg, dict) and cfg["reference"] == "b" and cfg["resume_from"] == [b.number]
    assert _epochs(sched, "r6", [0.5, 0.6, 0.4], restored=2) == TrialScheduler.CONTINUE
    promoted = study.get_trials()[cfg["trial_number"]]
    assert promoted.state == TrialState.RUNNING and "2" not in (promoted.user_attrs.get("rungs") or {})
    # promoted once: a later decision at the rung leaves b alone
    sched._promote(2)
    assert len(sched.promotions) == 1 and len(study.get_trials(states=(TrialState.WAITING,))) == 0
    # its training FLOPs count once: the epochs its origin trained are not spent again
    payload = {"status": "ok", "metrics": {"dev_eer": 0.4, "params": 104, "train_flops": 3e6}, "curves": {}}
    searcher.on_trial_complete("r6", {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload)})
    pruned = [t for t in study.get_trials(states=(TrialState.PRUNED,))]
    assert searcher.spent_train_flops() == sum(t.user_attrs["pruned"]["train_flops"] for t in pruned) + 3e6 - 2e6


def test_no_promotion_without_room_in_the_budget(tmp_path: Path) -> None:
    study, searcher, sched = _setup(tmp_path, budget=6)
    for i in range(6):
        searcher.suggest(f"r{i}")
    for rid, eers in (("r0", [0.5, 0.3]), ("r1", [0.5, 0.2]), ("r2", [0.5, 0.6]), ("r3", [0.5, 0.9]),
                      ("r4", [0.5, 0.95]), ("r5", [0.5, 0.97])):
        _epochs(sched, rid, eers)
    assert not sched.promotions and not study.get_trials(states=(TrialState.WAITING,))
