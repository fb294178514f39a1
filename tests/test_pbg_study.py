"""Population-based growth end to end: a real local Ray, real training on the generated corpus,
a real SQLite study (slow: run with ``-m slow``).

A member that falls behind at a boundary is recorded PRUNED and replaced by a child that
continues a better member's model (the shared-prefix cache hands it the parent's state) with
a growth or shrink drawn from the space; the child's lineage is an ordinary schedule that
``growsearch train --schedule`` replays from scratch to the same metrics; rerunning the same
command changes nothing; a driver killed mid-study resumes with nothing lost or doubled.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from growsearch.search.moasha import applied_prefix

from cli_run import GROWSEARCH
from cli_run import run_growsearch as run

pytestmark = pytest.mark.slow

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: 8 schedules: GRU layer 2 +4 or +8 before epoch 1 or 2, with or without shrinking back an epoch later.
SPACE = {
    "backbone": "lcgrnn", "preset": "tiny", "encoding": "flat", "events": {"min": 1, "max": 1},
    "epoch": {"low": 1, "high": 2}, "points": {"gru2": {"neurons": {"low": 4, "high": 8, "step": 4}}},
    "forms": ["inplace"], "inits": ["random"], "freeze": ["all"], "optimizer_state": ["fresh"],
    "plasticity": {"enabled": [False, True], "after": {"low": 1, "high": 1}, "rules": ["appended"]},
}
#: A reference whose growth wrecks training (a huge learning rate): a sure loser at boundary 2.
WRECKED = {"label": "wrecked", "schedule": {"events": [{"point": "gru2", "epoch": 1, "neurons": 32, "lr": 2.0}]}}
TRAIN = {
    "seed": 1,
    "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000},
    "model": {"backbone": "lcgrnn", "preset": "tiny"},
    "training": {"epochs": 4, "batch_size": 8, "lr": 3.0e-3, "device": "cpu", "max_batches_per_epoch": 4,
                 "max_eval_batches": 4},
}


def write_study(tmp_path: Path, corpus: Path, name: str, *, trials: int = 8, execution: dict[str, Any] | None = None,
                scheduler: dict[str, Any] | None = None) -> Path:
    train = json.loads(json.dumps(TRAIN))
    train["data"]["root"] = str(corpus)
    data: dict[str, Any] = {
        "name": name, "train": train, "space": SPACE, "epochs": 4, "objectives": ["dev_eer", "params"],
        "sampler": {"name": "random", "seed": 0}, "budget": {"trials": trials},
        "scheduler": scheduler or {"name": "pbg", "population": 4, "boundaries": [2], "quantile": 0.5},
        "reference": ["baseline", WRECKED], "outputs": str(tmp_path / "out"),
        "execution": {"num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 1, "retries": 1, **(execution or {})},
    }
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def check_lineages(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Every replaced member has exactly one child that continues its parent's applied prefix."""
    by_number = {t.number: t for t in trials}
    replaced = [t for t in trials if t.state == TrialState.PRUNED and t.user_attrs["pruned"]["scheduler"] == "pbg"]
    children = [t for t in trials if "lineage" in t.user_attrs and t.state != TrialState.FAIL]
    assert sorted(c.user_attrs["lineage"]["replaces"] for c in children) == sorted(t.number for t in replaced)
    for c in children:
        lin = c.user_attrs["lineage"]
        parent, b = by_number[lin["parent"]], lin["boundary"]
        assert lin["scheduler"] == "pbg" and b == 2
        assert applied_prefix(c.user_attrs["schedule"], b) == applied_prefix(parent.user_attrs["schedule"], b)
        assert c.user_attrs["schedule"] != parent.user_attrs["schedule"]
        if c.state == TrialState.COMPLETE:  # it started from the parent's state after b epochs
            assert c.user_attrs["metrics"]["prefix_epochs_reused"] >= b, c.user_attrs["metrics"]
            assert c.user_attrs["curves"]["dev_eer"][:b] == parent.user_attrs["curves"]["dev_eer"][:b]
    return children


def test_pbg_replaces_the_loser_and_its_child_replays(tmp_path: Path, corpus: Path) -> None:
    p = write_study(tmp_path, corpus, "pbg")
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "population-based growth" in res.stderr
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    trials = optuna.load_study(study_name="pbg", storage=url).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    members = [t for t in trials if "lineage" not in t.user_attrs and t.user_attrs.get("duplicate_of") is None]
    assert len(members) == 4  # the population: baseline, wrecked and two sampled schedules
    by_ref = {t.user_attrs.get("reference"): t for t in trials}
    wrecked = by_ref["wrecked"]
    assert wrecked.state == TrialState.PRUNED, [(t.number, t.state.name, t.user_attrs.get("rungs")) for t in trials]
    info = wrecked.user_attrs["pruned"]
    assert info["scheduler"] == "pbg" and info["rung"] == 2 and "replaced by a child of trial" in info["reason"]
    assert len(info["curves"]["dev_eer"]) == 2 and Path(info["checkpoint"]).is_file()
    children = check_lineages(trials)
    assert children and all(c.state in (TrialState.COMPLETE, TrialState.PRUNED) for c in children)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    keys = [json.dumps(t.user_attrs["schedule"]["events"], sort_keys=True) for t in finished]
    assert len(set(keys)) == len(keys), "a schedule trained twice"
    assert len(finished) <= 8

    # the child's lineage replays from scratch (no prefix cache) to the same metrics, same seed
    child = next(c for c in children if c.state == TrialState.COMPLETE)
    train_cfg = tmp_path / "train.yaml"
    cfg = json.loads(json.dumps(TRAIN))
    cfg["data"]["root"] = str(corpus)
    train_cfg.write_text(yaml.safe_dump(cfg))
    sched = tmp_path / "child.yaml"
    sched.write_text(yaml.safe_dump(child.user_attrs["schedule"]))
    res = subprocess.run([GROWSEARCH, "train", str(train_cfg), "--schedule", str(sched), "--seed", "1",
                          "--out", str(tmp_path / "replay"), "--no-resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads(res.stdout)
    m = child.user_attrs["metrics"]
    assert int(again["params"]) == int(m["params"]) and float(again["flops"]) == float(m["flops"])
    assert float(again["dev_eer"]) == float(m["dev_eer"]) == child.values[0]

    # PRUNED members are on no front; the same command again changes nothing
    res = run("pareto", str(p), "--json")
    assert res.returncode == 0, res.stderr
    pruned = {t.number for t in trials if t.state == TrialState.PRUNED}
    assert not pruned & {m["number"] for m in json.loads(res.stdout)}
    res = run("show", str(p))
    assert res.returncode == 0, res.stderr
    assert f"#{wrecked.number} (pbg): boundary 2:" in res.stdout
    assert f"#{children[0].number} {children[0].state.name}: continues #{children[0].user_attrs['lineage']['parent']} " \
           "after 2 epochs" in res.stdout
    before = [(t.number, t.state.name) for t in trials]
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    assert [(t.number, t.state.name) for t in optuna.load_study(study_name="pbg", storage=url).get_trials()] == before


def test_pbg_sigkill_resumes_without_losing_or_doubling(tmp_path: Path, corpus: Path) -> None:
    """kill -9 the driver once a member was replaced and a trial runs (one at a time: the wrecked
    reference is replaced at boundary 2, its child runs next): the same command resumes; each
    replaced member keeps exactly one child, a rerun child stays a child; no trial stays
    RUNNING or WAITING; no schedule finishes twice."""
    from test_search_ray import sigkill_driver_when

    p = write_study(tmp_path, corpus, "killed", execution={"epoch_delay_s": 1.0})
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"

    def replaced_and_running(trials: list[Any]) -> bool:
        return any(t.state == TrialState.PRUNED for t in trials) and any(t.state == TrialState.RUNNING for t in trials)

    killed = sigkill_driver_when(GROWSEARCH, p, url, "killed", replaced_and_running, "a replaced member and a running trial",
                                 tmp_path / "first.log")
    before = {t.number: (t.state.name, t.user_attrs.get("pruned")) for t in killed}
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    trials = optuna.load_study(study_name="killed", storage=url).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for n, (state, info) in before.items():
        if state == "PRUNED":
            assert trials[n].state == TrialState.PRUNED and trials[n].user_attrs["pruned"] == info
        if state == "RUNNING":  # interrupted: FAIL, and rerun once (a child stays a child)
            assert trials[n].state == TrialState.FAIL
            reruns = [t for t in trials if t.user_attrs.get("requeued_from") == n]
            assert len(reruns) == 1 and reruns[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
            assert reruns[0].user_attrs.get("lineage") == trials[n].user_attrs.get("lineage")
    check_lineages(trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    keys = [json.dumps(t.user_attrs["schedule"]["events"], sort_keys=True) for t in finished]
    assert len(set(keys)) == len(keys), "a schedule finished twice"
