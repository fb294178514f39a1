"""Growth-aware MOASHA end to end: a real local Ray, real training on the generated corpus, a
real SQLite study (slow: run with ``-m slow``).

Some trials end PRUNED with their rung, reason, partial curve and resumable checkpoint; they
are on no Pareto front and in no export; rerunning the same command reruns none of them.
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

from cli_run import GROWSEARCH
from cli_run import run_growsearch as run

pytestmark = pytest.mark.slow

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Growth only before epoch 1 trains, so every searched trial is settled at rung 2.
SPACE = {
    "backbone": "lcgrnn", "preset": "tiny", "events": {"min": 1, "max": 1}, "epoch": {"low": 1, "high": 1},
    "points": {"gru2": {"neurons": {"low": 4, "high": 32, "step": 4}}, "gru1": {"neurons": {"low": 4, "high": 16, "step": 4}}},
    "forms": ["inplace"], "inits": ["random", "zero_fanout"], "freeze": ["all"], "optimizer_state": ["fresh"],
}
#: A reference whose growth wrecks training (a huge learning rate, not NaN): a sure loser at rung 2.
WRECKED = {"label": "wrecked", "schedule": {"events": [{"point": "gru2", "epoch": 1, "neurons": 32, "lr": 2.0}]}}


def write_study(tmp_path: Path, corpus: Path, name: str, *, trials: int = 6, scheduler: Any = None, epochs: int = 3,
                execution: dict[str, Any] | None = None, reference: list[Any] | None = None) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "train": {
            "seed": 1,
            "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000, "root": str(corpus)},
            "model": {"backbone": "lcgrnn", "preset": "tiny"},
            "training": {"epochs": epochs, "batch_size": 8, "lr": 3.0e-3, "device": "cpu",
                         "max_batches_per_epoch": 4, "max_eval_batches": 4},
        },
        "space": SPACE,
        "epochs": epochs,
        "objectives": ["dev_eer", "params"],
        "sampler": {"name": "random", "seed": 0},
        "budget": {"trials": trials},
        "scheduler": scheduler or {"name": "moasha", "rungs": [2], "reduction_factor": 2, "min_epochs_after_growth": 1},
        "reference": reference or ["baseline", WRECKED],
        "outputs": str(tmp_path / "out"),
        "execution": {"num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 1, "retries": 1, **(execution or {})},
    }
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_moasha_prunes_and_pruned_trials_stay_out(tmp_path: Path, corpus: Path) -> None:
    p = write_study(tmp_path, corpus, "moasha")
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    study = optuna.load_study(study_name="moasha", storage=url)
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, [(t.number, t.state.name, t.user_attrs.get("rungs")) for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(pruned) + len(complete) == 6  # PRUNED trials count toward the trial budget
    assert "stopped early (PRUNED)" in res.stderr
    for t in pruned:
        info = t.user_attrs["pruned"]
        assert info["scheduler"] == "moasha" and info["rung"] == 2 and info["epoch"] == 1
        assert "rung 2" in info["reason"] and info["train_flops"] > 0
        assert len(info["curves"]["dev_eer"]) == 2 == len(t.user_attrs["curves"]["dev_eer"])  # the partial curve
        assert t.user_attrs["rungs"]["2"] == info["curves"]["dev_eer"][-1]
        assert Path(info["checkpoint"]).is_file()  # resumable: the state after the rung's epoch
        assert t.values is None
    for t in complete:  # every trial that reached the rung recorded its evidence
        assert "2" in t.user_attrs["rungs"] and len(t.user_attrs["curves"]["dev_eer"]) == 3
    by_ref = {t.user_attrs.get("reference"): t for t in trials}
    assert by_ref["wrecked"].state == TrialState.PRUNED, by_ref["wrecked"].user_attrs
    numbers = {t.number for t in pruned}

    # pareto and export: COMPLETE trials only
    res = run("pareto", str(p), "--json")
    assert res.returncode == 0, res.stderr
    front = json.loads(res.stdout)
    assert front and not numbers & {m["number"] for m in front}
    res = run("export", str(p), "-o", str(tmp_path / "all.yaml"), "--pick", "all")
    assert res.returncode == 0, res.stderr
    exported = yaml.safe_load((tmp_path / "all.yaml").read_text())
    assert not numbers & {s["trial"] for s in exported["schedules"]}

    # the same command again: the budget is met, nothing reruns, PRUNED stays PRUNED
    before = [(t.number, t.state.name) for t in trials]
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    after = optuna.load_study(study_name="moasha", storage=url).get_trials()
    assert [(t.number, t.state.name) for t in after] == before

    # a larger budget: new trials, but no PRUNED schedule or reference is trained again
    res = run("run", str(p.with_name("moasha.yaml")), "--trials", "8")
    assert res.returncode == 0, res.stderr[-3000:]
    after = optuna.load_study(study_name="moasha", storage=url).get_trials()
    assert [(t.number, t.state.name) for t in after[: len(before)]] == before
    pruned_keys = {json.dumps(t.user_attrs["schedule"]["events"], sort_keys=True) for t in pruned}
    for t in after[len(before):]:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            assert json.dumps(t.user_attrs["schedule"]["events"], sort_keys=True) not in pruned_keys
            assert t.user_attrs.get("reference") is None


def test_sigkill_between_rungs_loses_nothing(tmp_path: Path, corpus: Path) -> None:
    """kill -9 the driver while a trial that passed its rung trains on, after another was
    PRUNED: the same command resumes; the PRUNED trial stays PRUNED (not rerun), the
    interrupted one reruns from its checkpoint and is judged again (COMPLETE or PRUNED, once),
    no schedule finishes twice."""
    from test_search_ray import sigkill_driver_when

    p = write_study(tmp_path, corpus, "killed", epochs=6, execution={"max_concurrent": 2, "epoch_delay_s": 1.0})
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"

    def pruned_and_one_between_rungs(trials: list[Any]) -> bool:
        return (any(t.state == TrialState.PRUNED for t in trials)
                and any(t.state == TrialState.RUNNING and "2" in (t.user_attrs.get("rungs") or {}) for t in trials))

    killed = sigkill_driver_when(GROWSEARCH, p, url, "killed", pruned_and_one_between_rungs,
                                 "a PRUNED trial and a running one past its rung", tmp_path / "first.log")
    before = {t.number: (t.state.name, t.user_attrs.get("pruned")) for t in killed}
    assert "RUNNING" in {s for s, _ in before.values()}
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "re-enqueued" in res.stderr
    trials = optuna.load_study(study_name="killed", storage=url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for n, (state, info) in before.items():
        if state == "PRUNED":  # kept as it was, never rerun
            assert trials[n].state == TrialState.PRUNED and trials[n].user_attrs["pruned"] == info
        if state == "RUNNING":  # interrupted: FAIL, and rerun once
            assert trials[n].state == TrialState.FAIL and "driver" in trials[n].user_attrs["fail_reason"]
            reruns = [t for t in trials if t.user_attrs.get("requeued_from") == n]
            assert len(reruns) == 1 and reruns[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    keys = [json.dumps(t.user_attrs["schedule"]["events"], sort_keys=True) for t in finished]
    assert len(set(keys)) == len(keys), "a schedule finished twice"
    resumed = [t for t in finished if (t.user_attrs.get("attempt") or {}).get("resumed_from_trial") is not None
               or (t.state == TrialState.PRUNED and t.user_attrs.get("requeued_from") is not None)]
    assert resumed, [(t.number, t.state.name, t.user_attrs.get("attempt")) for t in finished]


def test_a_promoted_trial_resumes_its_checkpoint_and_matches_a_full_run(tmp_path: Path, corpus: Path) -> None:
    """``promote: true``: the baseline is stopped at rung 2 by a (recorded) trial with a better dev
    EER, then promoted once two wrecked references fill the rung; the promoted trial resumes the
    stopped one's checkpoint, is not judged again, and ends with the metrics of an uninterrupted
    run (``growsearch train``, same seed)."""
    from optuna.trial import create_trial

    from growsearch.search.runner import open_study
    from growsearch.search.study import load_study_config

    wrecked2 = {"label": "wrecked2", "schedule": {"events": [{"point": "gru1", "epoch": 1, "neurons": 16, "lr": 2.0}]}}
    p = write_study(tmp_path, corpus, "promote", trials=5, epochs=4,
                    scheduler={"name": "moasha", "rungs": [2], "reduction_factor": 2, "promote": True},
                    reference=["baseline", WRECKED, wrecked2])
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    cfg = load_study_config(p)
    study = open_study(cfg, url)
    # evidence recorded before the run: a schedule with dev EER 0 after 2 epochs (it outranks the baseline)
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.0, 9999.0], params={}, distributions={},
                                 user_attrs={"schedule": {"version": 1, "events": [{"point": "gru2", "epoch": 1, "neurons": 4}]},
                                             "curves": {"dev_eer": [0.5, 0.0, 0.0, 0.0]}}))
    res = run("run", str(p))
    assert res.returncode == 0, res.stderr[-3000:]
    trials = optuna.load_study(study_name="promote", storage=url).get_trials()
    by_ref: dict[Any, list[Any]] = {}
    for t in trials:
        by_ref.setdefault(t.user_attrs.get("reference"), []).append(t)
    first, again = by_ref["baseline"][0], by_ref["baseline"][-1]
    assert first.state == TrialState.PRUNED and first.user_attrs["pruned"]["rung"] == 2, \
        [(t.number, t.state.name, t.user_attrs.get("rungs")) for t in trials]
    assert again.number != first.number and again.state == TrialState.COMPLETE
    assert again.user_attrs["promoted_from"] == first.number
    assert again.user_attrs["attempt"].get("resumed_from_trial") == first.number
    assert "2" not in (again.user_attrs.get("rungs") or {})  # not judged again where it was stopped
    n = len(first.user_attrs["pruned"]["curves"]["dev_eer"])
    assert again.user_attrs["curves"]["dev_eer"][:n] == first.user_attrs["pruned"]["curves"]["dev_eer"]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # the resumed run ends where an uninterrupted run of the same schedule and seed ends
    train = yaml.safe_load(p.read_text())["train"]
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    res = subprocess.run([GROWSEARCH, "train", str(tmp_path / "train.yaml"), "--seed", "1", "--out", str(tmp_path / "full"),
                          "--no-resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    full = json.loads(res.stdout)
    assert float(full["dev_eer"]) == again.values[0] and int(full["params"]) == int(again.values[1])
