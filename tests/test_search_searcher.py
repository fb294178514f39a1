"""The DB-backed searcher, driven by hand (no Ray cluster): a real SQLite study file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from growsearch.schedule import GrowthSchedule
from growsearch.search.sampling import TrialSeededSampler
from growsearch.search.searcher import FINAL_KEY, PAYLOAD_KEY, StudySearcher, driver_alive
from growsearch.search.space import load_space
from growsearch.search.storage import GRACE_PERIOD, open_storage

ROOT = Path(__file__).resolve().parents[1]
OBJ = ["dev_eer", "params"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(tmp_path: Path) -> optuna.Study:
    st = open_storage(f"sqlite:///{tmp_path}/study.db")
    return optuna.create_study(study_name="s", storage=st, directions=["minimize", "minimize"],
                               sampler=TrialSeededSampler(optuna.samplers.RandomSampler(seed=0), 0), load_if_exists=True)


def _searcher(study: optuna.Study, budget: int | None = 4) -> StudySearcher:
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=5)
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
    study.set_user_attr(s.lease_key, {**study.user_attrs[s.lease_key], "pid": _dead_pid()})
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


def test_a_driver_killed_while_sampling_reruns_only_complete_proposals(tmp_path: Path) -> None:
    """A driver dead between a trial's first and last parameter left a half-sampled trial: it
    is failed, not re-enqueued with its partial parameters (the sampler would fill the rest with
    a schedule nobody proposed); an enqueued trial cut off while asked keeps its enqueued
    parameters; a completely proposed one reruns its parameters."""
    from growsearch.search.attrs import TRIAL_DRIVER, TRIAL_SCHEDULE

    study = _study(tmp_path)
    s = _searcher(study, budget=10)
    s.resync()
    assert s.suggest("ref")["reference"] == "baseline"
    full = s.suggest("full")  # a complete proposal
    token = str(study.user_attrs[s.lease_key]["token"])
    half = study.ask()  # killed mid-sampling: one parameter, no schedule yet
    TRIAL_DRIVER.set(half, token)
    half.suggest_int("n_events", 1, 1)
    fixed = dict(full["params"], n_events=full["params"]["n_events"])
    study.enqueue_trial(fixed, user_attrs={"requeued_from": full["trial_number"]}, skip_if_exists=False)
    enq = study.ask()  # an enqueued trial, killed before its parameters were read
    TRIAL_DRIVER.set(enq, token)
    assert not enq.params and TRIAL_SCHEDULE.key not in enq.user_attrs
    study.set_user_attr(s.lease_key, {**study.user_attrs[s.lease_key], "pid": _dead_pid()})

    s2 = _searcher(_study(tmp_path), budget=10)
    info = s2.resync()
    assert info["requeued"] == 3  # all four failed; three have something to rerun
    waiting = study.get_trials(states=(TrialState.WAITING,))
    by_from = {t.user_attrs["requeued_from"]: t for t in waiting}
    assert set(by_from) == {0, full["trial_number"], enq.number}  # not the half-sampled one
    assert by_from[full["trial_number"]].system_attrs["fixed_params"] == full["params"]
    assert by_from[enq.number].system_attrs["fixed_params"] == fixed
    assert by_from[0].user_attrs["reference"] == "baseline"
    failed = {t.number: t for t in study.get_trials(states=(TrialState.FAIL,))}
    assert half.number in failed and "driver" in failed[half.number].user_attrs["fail_reason"]


def _run_together(*fns: Callable[[], Any]) -> list[Any]:
    """Call ``fns`` at the same instant in threads (a barrier), as two driver processes would."""
    barrier = threading.Barrier(len(fns))
    out: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fns[i]()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return out


def _by_state(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials():
        out.setdefault(t.state.name, []).append(t)
    return out


def test_two_live_drivers_share_one_study(tmp_path: Path) -> None:
    """Two drivers (own storage objects, distinct tokens) interleave on one study: they
    complete exactly the budget together, leave each other's trials alone, tell nothing twice
    and run the reference once."""
    _study(tmp_path)
    a, b = _searcher(_study(tmp_path), budget=4), _searcher(_study(tmp_path), budget=4)
    assert a.driver["token"] != b.driver["token"]
    a.resync()
    assert b.resync() == {"complete": 0, "requeued": 0, "waiting": 1}  # the reference, once
    ca0, cb0, _, _ = a.suggest("a0"), b.suggest("b0"), a.suggest("a1"), b.suggest("b1")
    assert ca0["reference"] == "baseline" and cb0["reference"] is None
    assert b.suggest("b2") is None and a.suggest("a2") is None  # the whole budget is running
    # a driver joining (or re-syncing) now leaves the other's live trials alone
    assert b.resync()["requeued"] == 0 and a.resync()["requeued"] == 0
    study = _study(tmp_path)
    assert len(_by_state(study)["RUNNING"]) == 4
    leases = a.leases()
    assert set(leases) == {a.driver["token"], b.driver["token"]}
    assert {t.user_attrs["driver"] for t in study.get_trials()} == set(leases)
    a.on_trial_complete("a0", _ok(0.3, 100))
    nan = {FINAL_KEY: True, PAYLOAD_KEY: json.dumps({"status": "nan", "fail_reason": "nan"})}
    b.on_trial_complete("b1", nan)  # failed: its slot is free again, for either driver
    ca2 = a.suggest("a2")  # 1 complete + 2 running (a1, b0) < 4: a takes b's freed slot
    assert isinstance(ca2, dict) and ca2["reference"] is None
    assert a.suggest("a3") is None and b.suggest("b2") is None
    for drv, rid, eer in ((b, "b0", 0.2), (a, "a1", 0.25), (a, "a2", 0.22)):
        drv.on_trial_complete(rid, _ok(eer, 50))
    a.on_trial_complete("a1", _ok(0.01, 1))  # told twice: ignored
    b.on_trial_complete("a1", _ok(0.01, 1))  # not b's trial: ignored
    assert a.suggest("a4") == Searcher.FINISHED and b.suggest("b4") == Searcher.FINISHED
    states = _by_state(_study(tmp_path))
    assert len(states["COMPLETE"]) == 4 and "RUNNING" not in states and "WAITING" not in states
    assert [t.user_attrs["fail_reason"] for t in states["FAIL"]] == ["nan"]
    assert [t.user_attrs.get("reference") for t in states["COMPLETE"]].count("baseline") == 1
    assert sorted(t.values[0] for t in states["COMPLETE"]) == [0.2, 0.22, 0.25, 0.3]
    ray_ids = [t.user_attrs["ray_trial_id"] for t in _study(tmp_path).get_trials()]
    assert len(ray_ids) == len(set(ray_ids))
    for drv in (a, b):
        drv.close("test over")
        assert _study(tmp_path).user_attrs[drv.lease_key]["stopped"] is True
        assert not driver_alive(_study(tmp_path).user_attrs[drv.lease_key])


@pytest.mark.parametrize("rounds", [3])
def test_drivers_starting_together_run_the_reference_once(tmp_path: Path, rounds: int) -> None:
    for r in range(rounds):
        root = tmp_path / str(r)
        root.mkdir()
        _study(root)
        a, b = _searcher(_study(root), budget=4), _searcher(_study(root), budget=4)
        _run_together(a.resync, b.resync)
        got = []
        for i in range(3):
            got += [a.suggest(f"a{i}"), b.suggest(f"b{i}")]
        ran = [c for c in got if isinstance(c, dict) and c["reference"] == "baseline"]
        assert len(ran) == 1, got
        # a duplicate enqueued reference (if both enqueued) was skipped, never run
        for t in _study(root).get_trials():
            if t.user_attrs.get("reference") and t.state == TrialState.FAIL:
                assert "duplicate reference" in t.user_attrs["fail_reason"]


def test_duplicate_reference_is_skipped_not_run(tmp_path: Path) -> None:
    study = _study(tmp_path)
    a = _searcher(study, budget=5)
    a.resync()
    sched = GrowthSchedule.empty().to_dict()
    study.enqueue_trial({}, user_attrs={"reference": "baseline", "schedule": sched})  # the race's twin
    c0, c1 = a.suggest("a0"), a.suggest("a1")
    assert c0["reference"] == "baseline" and c1["reference"] is None
    a.on_trial_complete("a0", _ok(0.3, 10))
    study.enqueue_trial({}, user_attrs={"reference": "baseline", "schedule": sched})  # a late twin
    assert a.suggest("a2")["reference"] is None
    refs = [t for t in study.get_trials() if t.user_attrs.get("reference") == "baseline"]
    assert [t.state for t in refs] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert all("trial 0 runs it" in t.user_attrs["fail_reason"] for t in refs[1:])
    assert a.n_failed == 0


def test_dead_driver_trials_requeued_once_by_two_live_drivers(tmp_path: Path) -> None:
    _study(tmp_path)
    dead = _searcher(_study(tmp_path), budget=6)
    dead.resync()
    for rid in ("d0", "d1", "d2"):
        dead.suggest(rid)
    dead.on_trial_complete("d0", _ok(0.3, 10))
    live, other = _searcher(_study(tmp_path), budget=6), _searcher(_study(tmp_path), budget=6)
    assert live.resync()["requeued"] == 0 and other.resync()["requeued"] == 0  # dead is still alive
    live.suggest("l0")
    running = {t.number: t.params for t in _study(tmp_path).get_trials() if t.state == TrialState.RUNNING
               and t.user_attrs["driver"] == dead.driver["token"]}
    assert len(running) == 2
    # it dies: its lease names a pid that no longer exists (same host)
    study = _study(tmp_path)
    study.set_user_attr(dead.lease_key, {**study.user_attrs[dead.lease_key], "pid": _dead_pid()})
    # two live drivers reap at the same instant (and a third joins): each trial requeued once
    got = _run_together(live.reap, other.reap, lambda: _searcher(_study(tmp_path), budget=6).resync()["requeued"])
    assert sum(got) == 2, got
    assert _run_together(live.reap, other.reap) == [0, 0]
    states = _by_state(_study(tmp_path))
    assert len(states["FAIL"]) == 2 and len(states["WAITING"]) == 2
    assert all("driver" in t.user_attrs["fail_reason"] for t in states["FAIL"])
    assert sorted(t.user_attrs["requeued_from"] for t in states["WAITING"]) == sorted(running)
    # the live driver's own trial was not touched
    assert [t.user_attrs["ray_trial_id"] for t in states["RUNNING"]] == ["l0"]
    # the re-enqueued parameters run again (the budget counts them once)
    again = [live.suggest(r) for r in ("l1", "l2")]
    assert sorted(json.dumps(c["params"], sort_keys=True) for c in again) == \
        sorted(json.dumps(p, sort_keys=True) for p in running.values())


def test_fail_is_a_compare_and_swap(tmp_path: Path) -> None:
    """Drivers failing the same RUNNING trial at the same instant: exactly one wins (and so
    only one re-enqueues it). Optuna's own read-then-write lets two win on SQLite."""
    _study(tmp_path)
    drivers = [_searcher(_study(tmp_path), budget=None) for _ in range(5)]
    study = _study(tmp_path)
    for k in range(10):
        trial = study.ask()
        wins = _run_together(*[lambda d=d, tid=trial._trial_id: d._fail(tid, f"reaped by {d.driver['token']}") for d in drivers])
        assert sum(wins) == 1, (k, wins)
        ft = study._storage.get_trial(trial._trial_id)
        winner = drivers[wins.index(True)]
        assert ft.state == TrialState.FAIL and ft.user_attrs["fail_reason"] == f"reaped by {winner.driver['token']}"
    done = study.ask()
    study.tell(done, [0.1, 1.0])
    assert drivers[0]._fail(done._trial_id, "late") is False
    assert study._storage.get_trial(done._trial_id).state == TrialState.COMPLETE


@pytest.mark.parametrize(
    ("change", "alive"),
    [
        ({}, True),                                                    # this process, fresh beat
        ({"stopped": True}, False),                                    # closed cleanly
        ({"pid": "dead"}, False),                                      # same host, pid gone
        ({"beat": -120}, False),                                       # same host, stale beat (pid reused)
        ({"host": "elsewhere", "pid": "dead"}, True),                  # other host: only the beat counts
        ({"host": "elsewhere", "beat": -120}, False),
    ],
)
def test_driver_alive(change: dict, alive: bool) -> None:
    import os
    import socket
    import time

    now = time.time()
    lease = {"host": socket.gethostname(), "pid": os.getpid(), "beat": now, "token": "t"}
    for k, v in change.items():
        lease[k] = _dead_pid() if v == "dead" else (now + v if k == "beat" else v)
    assert driver_alive(lease, now=now) is alive
    assert not driver_alive(None) and not driver_alive({})


def test_other_host_driver_is_reaped_only_after_grace(tmp_path: Path) -> None:
    import time

    _study(tmp_path)
    other = _searcher(_study(tmp_path), budget=4)
    other.resync()
    other.suggest("o0")
    study = _study(tmp_path)
    lease = {**study.user_attrs[other.lease_key], "host": "elsewhere", "pid": 1}
    study.set_user_attr(other.lease_key, lease)
    live = _searcher(_study(tmp_path), budget=4)
    assert live.resync()["requeued"] == 0  # fresh beat on another host: alive
    assert live.reap(now=time.time() + GRACE_PERIOD + 1) == 1  # its beat went stale: dead
    assert live.reap(now=time.time() + GRACE_PERIOD + 1) == 0


def test_trial_without_driver_is_reaped_when_its_heartbeat_is_stale(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from growsearch.search import lease as lease_mod

    study = _study(tmp_path)
    live = _searcher(_study(tmp_path), budget=None)
    live.resync()
    by_hand = study.ask()  # no growsearch driver token: judged by its Optuna heartbeat
    beating = study.ask()
    study._storage.record_heartbeat(beating._trial_id)
    assert live.reap() == 0  # younger than the grace period
    # ages are measured by the database at query time: the beat must stay younger than the
    # grace period until reap() reads it, even on a loaded machine (3 s of slack)
    monkeypatch.setattr(lease_mod, "GRACE_PERIOD", 3)
    time.sleep(3.2)
    study._storage.record_heartbeat(beating._trial_id)
    assert live.reap() == 1
    states = {t.number: t.state for t in _study(tmp_path).get_trials()}
    assert states[by_hand.number] == TrialState.FAIL and states[beating.number] == TrialState.RUNNING


def test_heartbeat_thread_refreshes_the_lease_and_reaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running driver takes a dead driver's trials over by itself (no restart needed)."""
    import time

    from growsearch.search import lease as lease_mod

    monkeypatch.setattr(lease_mod, "HEARTBEAT_INTERVAL", 0.2)
    _study(tmp_path)
    dead = _searcher(_study(tmp_path), budget=4)
    dead.resync()
    dead.suggest("d0")
    live = _searcher(_study(tmp_path), budget=4)
    live.resync()
    beat0 = _study(tmp_path).user_attrs[live.lease_key]["beat"]
    live.start_heartbeats()
    try:
        study = _study(tmp_path)
        study.set_user_attr(dead.lease_key, {**study.user_attrs[dead.lease_key], "pid": _dead_pid()})
        deadline = time.time() + 20
        while time.time() < deadline and live.n_requeued == 0:
            time.sleep(0.1)
        assert _study(tmp_path).user_attrs[live.lease_key]["beat"] > beat0  # refreshed before reaping
    finally:
        live.close("test over")
    assert live.n_requeued == 1
    trials = _study(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs == {"reference": "baseline", "schedule": trials[0].user_attrs["schedule"],
                                    "requeued_from": 0}
    lease = _study(tmp_path).user_attrs[live.lease_key]
    assert lease["stopped"] is True and lease["ended"] > beat0


def test_constraints_recorded_for_the_sampler(tmp_path: Path) -> None:
    from growsearch.search.study import Constraints

    study = _study(tmp_path)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=5)
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


def _failing_heartbeats(study: optuna.Study, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the storage's heartbeat write (and only it) fail as a locked database does."""
    import sqlalchemy

    from growsearch.search.optuna_private import rdb_of

    calls: list[int] = []

    def record_heartbeat(trial_id: int) -> None:
        calls.append(trial_id)
        raise sqlalchemy.exc.OperationalError("UPDATE trial_heartbeats", {}, Exception("database is locked"))

    monkeypatch.setattr(rdb_of(study), "record_heartbeat", record_heartbeat)
    return calls


@pytest.mark.parametrize(("max_failures", "logged"), [(3, 1), (11, 2)])
def test_a_failing_heartbeat_is_logged_then_stops_the_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture,
                                                              max_failures: int, logged: int) -> None:
    """The first failure and every tenth are logged; after ``max_failures`` in a row the
    session stops (lease_lost), asks nothing more, and its live trial is re-enqueued."""
    import logging
    import time

    from growsearch.search import lease as lease_mod

    monkeypatch.setattr(lease_mod, "HEARTBEAT_INTERVAL", 0.02)
    study = _study(tmp_path)
    s = StudySearcher(study, load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=5), objectives=OBJ,
                      budget_trials=4, heartbeat_max_failures=max_failures)
    s.resync()
    cfg = s.suggest("r0")
    calls = _failing_heartbeats(study, monkeypatch)
    stopper = s.stopper()
    assert not stopper.stop_all()
    with caplog.at_level(logging.WARNING, logger="growsearch.search.lease"):
        s.start_heartbeats()
        deadline = time.time() + 20
        while time.time() < deadline and s.lease_lost is None:
            time.sleep(0.02)
        time.sleep(0.1)  # the thread has ended: no further beats
    assert s.lease_lost is not None, "the driver did not stop"
    assert f"failed {max_failures} times in a row" in s.lease_lost and "heartbeat_max_failures" in s.lease_lost
    assert "database is locked" in s.lease_lost
    assert len(calls) == max_failures  # one failing write per beat, none after the driver stopped
    msgs = [r.getMessage() for r in caplog.records if r.name == "growsearch.search.lease"]
    assert len(msgs) == logged and "(1 in a row" in msgs[0] and "database is locked" in msgs[0], msgs
    assert stopper.stop_all()  # Tune ends the run
    assert s.suggest("r1") is None  # the live trial is still busy; nothing new is asked
    assert s.storage_error is None  # a locked database is no storage fault: this is the heartbeat's own stop
    # Tune stops the live trial: it is FAILed with the reason and re-enqueued; the lease is released
    s.on_trial_complete("r0", {"dev_eer": 0.5})
    assert s.suggest("r2") == Searcher.FINISHED
    s.close("test over")
    trials = _study(tmp_path).get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.WAITING]
    assert "heartbeat kept failing" in trials[0].user_attrs["fail_reason"]
    assert trials[1].user_attrs["requeued_from"] == cfg["trial_number"]
    assert _study(tmp_path).user_attrs[s.lease_key]["stopped"] is True


def test_a_heartbeat_that_recovers_resets_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures count in a row: a heartbeat failing every other beat never stops the driver."""
    import time

    import sqlalchemy

    from growsearch.search import lease as lease_mod
    from growsearch.search.optuna_private import rdb_of

    monkeypatch.setattr(lease_mod, "HEARTBEAT_INTERVAL", 0.02)
    study = _study(tmp_path)
    s = StudySearcher(study, load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=5), objectives=OBJ,
                      budget_trials=4, heartbeat_max_failures=2)
    s.resync()
    s.suggest("r0")
    real = rdb_of(study).record_heartbeat
    calls: list[int] = []

    def flaky(trial_id: int) -> None:
        calls.append(trial_id)
        if len(calls) % 2:
            raise sqlalchemy.exc.OperationalError("UPDATE trial_heartbeats", {}, Exception("database is locked"))
        real(trial_id)

    monkeypatch.setattr(rdb_of(study), "record_heartbeat", flaky)
    s.start_heartbeats()
    try:
        deadline = time.time() + 20
        while time.time() < deadline and len(calls) < 12:
            time.sleep(0.02)
    finally:
        s.close("test over")
    assert len(calls) >= 12 and s.lease.beat_failures >= 6
    assert s.lease_lost is None
