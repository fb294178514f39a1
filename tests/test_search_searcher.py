"""The DB-backed searcher, driven by hand (no Ray cluster): a real SQLite study file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from growsearch.errors import ConfigError
from growsearch.schedule import GrowthSchedule
from growsearch.search.searcher import FINAL_KEY, PAYLOAD_KEY, StudySearcher
from growsearch.search.space import load_space
from growsearch.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
OBJ = ["dev_eer", "params"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(tmp_path: Path) -> optuna.Study:
    st = open_storage(f"sqlite:///{tmp_path}/study.db")
    return optuna.create_study(study_name="s", storage=st, directions=["minimize", "minimize"],
                               sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True)


def _searcher(study: optuna.Study, budget: int | None = 4) -> StudySearcher:
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=3)
    return StudySearcher(study, space, objectives=OBJ, budget_trials=budget,
                         references=[("baseline", GrowthSchedule.empty())], seed=42, versions={"x": "1"})


def _ok(eer: float, params: int) -> dict:
    payload = {"status": "ok", "metrics": {"dev_eer": eer, "params": params, "flops": 10.0},
               "curves": {"dev_eer": [0.5, eer]}, "node": {"hostname": "h"}}
    return {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload), "dev_eer": eer}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_reference_first_then_sampled_then_budget(tmp_path: Path) -> None:
    study = _study(tmp_path)
    s = _searcher(study, budget=3)
    info = s.resync()
    assert info == {"complete": 0, "requeued": 0, "waiting": 1}
    c0 = s.suggest("r0")
    assert c0["reference"] == "baseline" and c0["params"] == {} and c0["schedule"] == {"version": 1, "events": []}
    c1 = s.suggest("r1")
    assert c1["reference"] is None and "n_events" in c1["params"]
    s.on_trial_complete("r0", _ok(0.3, 100))
    s.on_trial_complete("r1", _ok(0.2, 150))
    s.on_trial_complete("r1", _ok(0.1, 150))  # told twice: ignored
    t0, t1 = study.trials[:2]
    assert t0.state == TrialState.COMPLETE and t0.values == [0.3, 100.0]
    assert t0.user_attrs["reference"] == "baseline" and t0.user_attrs["ray_trial_id"] == "r0"
    assert t1.values == [0.2, 150.0] and t1.user_attrs["curves"]["dev_eer"] == [0.5, 0.2]
    for key in ("schedule", "curves", "metrics", "ray_trial_id", "node", "seed", "versions"):
        assert key in t1.user_attrs, key
    assert s.space.decode(t1.params).to_dict() == t1.user_attrs["schedule"]
    c2 = s.suggest("r2")
    assert s.suggest("r3") is None  # budget 3: 2 complete + 1 running -> wait
    s.on_trial_complete("r2", _ok(0.25, 90))
    assert s.suggest("r4") == Searcher.FINISHED
    assert len(study.trials) == 3 and c2["trial_number"] == 2
    s.close("session over")
    # a second session sees the budget reached and the reference already there
    s2 = _searcher(study, budget=3)
    assert s2.resync()["complete"] == 3 and s2.suggest("x") == Searcher.FINISHED
    assert len(study.trials) == 3


def test_failures_nan_error_and_partial_results(tmp_path: Path) -> None:
    study = _study(tmp_path)
    s = _searcher(study, budget=10)
    s.resync()
    for rid in ("a", "b", "c", "d"):
        s.suggest(rid)
    nan = {FINAL_KEY: True, PAYLOAD_KEY: json.dumps({"status": "nan", "fail_reason": "nan"})}
    s.on_trial_complete("a", nan)
    s.on_trial_complete("b", None, error=True)
    s.fail_pending("b", "error: RayActorError: the actor died")
    partial = {FINAL_KEY: False, "dev_eer": 0.1}  # stopped by wall time / interrupt
    s.on_trial_complete("c", partial)
    nonfinite = _ok(float("nan"), 5)
    s.on_trial_complete("d", nonfinite)
    by = {t.number: t for t in study.trials}
    assert by[0].state == TrialState.FAIL and by[0].user_attrs["fail_reason"] == "nan"
    assert by[1].state == TrialState.FAIL and "actor died" in by[1].user_attrs["fail_reason"]
    assert by[2].state == TrialState.FAIL and "re-enqueued" in by[2].user_attrs["fail_reason"]
    assert by[3].state == TrialState.FAIL and by[3].user_attrs["fail_reason"] == "nan"
    # the partially run trial comes back with the same parameters
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == by[2].params
    c = s.suggest("e")
    assert c["params"] == by[2].params
    assert s.n_complete == 0 and s.n_failed == 3


def test_resync_after_dead_driver(tmp_path: Path) -> None:
    study = _study(tmp_path)
    s = _searcher(study, budget=4)
    s.resync()
    for rid in ("a", "b", "c"):
        s.suggest(rid)
    s.on_trial_complete("a", _ok(0.3, 10))
    # the driver dies: its lease names a pid that no longer exists
    study.set_user_attr("driver", {**study.user_attrs["driver"], "pid": _dead_pid()})
    running = {t.number: t.params for t in study.trials if t.state == TrialState.RUNNING}
    assert len(running) == 2
    s2 = _searcher(_study(tmp_path), budget=3)
    info = s2.resync()
    assert info["complete"] == 1 and info["requeued"] == 2 and info["waiting"] == 2
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for n in running:
        assert "driver" in trials[n].user_attrs["fail_reason"]
    # the re-enqueued trials rerun their parameters; nothing is counted twice
    got = [s2.suggest(r) for r in ("x", "y", "z")]
    assert got[2] is None  # budget 3 = 1 complete + 2 running
    requeued = sorted(json.dumps(c["params"], sort_keys=True) for c in got[:2])
    assert requeued == sorted(json.dumps(p, sort_keys=True) for p in running.values())
    # a stale late result for an old Ray trial id is ignored
    s2.on_trial_complete("b", _ok(0.1, 1))
    s2.on_trial_complete("x", _ok(0.2, 20))
    s2.on_trial_complete("y", _ok(0.2, 30))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and s2.n_complete == 3


def test_live_driver_is_refused(tmp_path: Path) -> None:
    study = _study(tmp_path)
    s = _searcher(study)
    s.resync()
    # a second driver in another process would see this process's lease: simulate by a new token
    other = _searcher(_study(tmp_path))
    with pytest.raises(ConfigError, match="being run by another growsearch"):
        other.resync()
    s.close("test over")
    other.resync()  # a closed driver releases the study


def test_constraints_recorded_for_the_sampler(tmp_path: Path) -> None:
    from growsearch.search.study import Constraints

    study = _study(tmp_path)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=3)
    cons = Constraints(max_params=120)
    s = StudySearcher(study, space, objectives=OBJ, budget_trials=2, constraint_fn=cons.values)
    s.resync()
    s.suggest("a")
    s.suggest("b")
    s.on_trial_complete("a", _ok(0.3, 100))
    s.on_trial_complete("b", _ok(0.1, 150))
    a, b = study.trials
    assert a.user_attrs["constraint"] == [-20.0] and b.user_attrs["constraint"] == [30.0]
    assert a.constraints == {"max_params": -20.0} and b.constraints == {"max_params": 30.0}
    # the infeasible trial, though better on EER, is not on the (feasible) Pareto front
    assert [t.number for t in study.best_trials] == [a.number]
