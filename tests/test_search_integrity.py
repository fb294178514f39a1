"""Search integrity without a Ray cluster (real SQLite studies): proposals reproducible per
seed and study history (not per run or driver), no schedule trained twice, references rerun
until COMPLETE, storage faults turned into one line. The Ray/CLI halves are in
``test_search_ray.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from growsearch.schedule import GrowthSchedule
from growsearch.search.runner import make_sampler
from growsearch.search.sampling import TrialSeededSampler
from growsearch.search.searcher import FINAL_KEY, PAYLOAD_KEY, StudySearcher
from growsearch.search.space import load_space, parse_space
from growsearch.search.storage import open_storage, storage_fault
from growsearch.search.study import load_study_config
from growsearch.vocabulary import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
OBJ = ["dev_eer", "params"]
GROWSEARCH = str(Path(sys.executable).with_name("growsearch"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(epochs: int = 5):
    return load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=epochs)


def _study(path: Path, sampler: optuna.samplers.BaseSampler | None = None, name: str = "s") -> optuna.Study:
    st = open_storage(f"sqlite:///{path}/study.db")
    return optuna.create_study(study_name=name, storage=st, directions=["minimize", "minimize"],
                               sampler=sampler or TrialSeededSampler(optuna.samplers.RandomSampler(seed=0), 0),
                               load_if_exists=True)


def _ok(eer: float, params: int) -> dict:
    payload = {"status": "ok", "metrics": {"dev_eer": eer, "params": params}, "curves": {}, "node": {}}
    return {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(payload)}


NAN = {FINAL_KEY: True, PAYLOAD_KEY: json.dumps({"status": "nan", "fail_reason": "nan"})}


def _searcher(study: optuna.Study, budget: int | None = 6, space=None, references=None) -> StudySearcher:
    refs = [("baseline", GrowthSchedule.empty())] if references is None else references
    return StudySearcher(study, space or _space(), objectives=OBJ, budget_trials=budget, references=refs, seed=1)


def _fake_values(params: dict) -> list[float]:
    """A deterministic stand-in for training (the samplers only see the values)."""
    text = json.dumps(params, sort_keys=True)
    return [(sum(map(ord, text)) % 97) / 97.0, float(len(text))]


def _config(tmp_path: Path, sampler: str) -> Path:
    data = {
        "name": f"repro-{sampler}",
        "train": {"seed": 1, "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000,
                                      "root": str(tmp_path / "c")},
                  "model": {"backbone": "lcgrnn", "preset": "tiny"},
                  "training": {"epochs": 5, "device": "cpu", "batch_size": 8, "max_batches_per_epoch": 2,
                               "max_eval_batches": 2}},
        # a grid needs a flat space: GrowBench's
        "space": str(ROOT / "search_spaces" / ("growbench.yaml" if sampler in ("grid", "growth") else "quickstart.yaml")),
        "epochs": 5,
        "objectives": OBJ,
        "sampler": {"name": sampler, "seed": 3, "population_size": 2},
        "budget": {"trials": 6},
        "outputs": str(tmp_path / "out"),
    }
    p = tmp_path / f"{sampler}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_proposals_depend_on_seed_and_history_not_on_the_run(tmp_path: Path, sampler: str) -> None:
    """One study run by one driver, and the same study where every trial is asked by a new
    driver (a new sampler, as after every restart): the same proposals, and no repeats.
    Seeded once per driver, every new driver replayed the first proposals."""
    cfg = load_study_config(_config(tmp_path, sampler))
    space = cfg.space

    def run(where: Path, new_driver_each_trial: bool) -> list[dict]:
        where.mkdir()
        study = _study(where, make_sampler(cfg))
        got = []
        for _ in range(4):
            if new_driver_each_trial:
                study = optuna.load_study(study_name="s", storage=study._storage, sampler=make_sampler(cfg))
            trial = study.ask()
            space.define_by_run(trial)
            got.append(dict(trial.params))
            study.tell(trial, _fake_values(trial.params))
        return got

    one = run(tmp_path / "one", False)
    many = run(tmp_path / "many", True)
    assert one == many
    keys = [json.dumps(space.decode(p).to_dict(), sort_keys=True) for p in one]
    assert len(set(keys)) == len(keys), "a repeated schedule"


def test_rerun_after_dead_driver_and_second_driver_train_distinct_schedules(tmp_path: Path) -> None:
    """A driver dies with two trials RUNNING; a rerun (new sampler, same seed) re-enqueues
    them, and a second live driver joins: every schedule trained is distinct, each
    interrupted one reruns once, and no proposal repeated one the study had."""
    first = _searcher(_study(tmp_path), budget=8)
    first.resync()
    for rid in ("a0", "a1", "a2"):
        first.suggest(rid)
    first.on_trial_complete("a0", _ok(0.3, 10))
    study = _study(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study.set_user_attr(first.lease_key, {**study.user_attrs[first.lease_key], "pid": dead.pid})

    rerun, other = _searcher(_study(tmp_path), budget=8), _searcher(_study(tmp_path), budget=8)
    assert rerun.resync()["requeued"] == 2
    other.resync()
    n = 0
    while True:
        progressed = False
        for drv, tag in ((rerun, "r"), (other, "o")):
            cfg = drv.suggest(f"{tag}{n}")
            if isinstance(cfg, dict):
                drv.on_trial_complete(f"{tag}{n}", _ok(0.1 + 0.01 * n, 20 + n))
                progressed = True
            n += 1
        if not progressed:
            break
    trials = _study(tmp_path).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 8
    keys = [json.dumps(t.user_attrs["schedule"], sort_keys=True) for t in done]
    assert len(set(keys)) == len(keys), "a schedule was trained twice"
    assert not [t for t in trials if "duplicate_of" in t.user_attrs], "the sampler replayed a proposal"
    assert sorted(t.user_attrs["requeued_from"] for t in done if "requeued_from" in t.user_attrs) == [1, 2]
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.FAIL}


def _one_schedule_space():
    """A space holding exactly one schedule: every proposal after the first repeats it."""
    return parse_space({"backbone": "lcgrnn", "preset": "tiny", "events": {"min": 1, "max": 1},
                        "epoch": {"low": 1, "high": 1}, "points": {"gru2": {"neurons": {"low": 4, "high": 4}}},
                        "forms": ["inplace"], "inits": ["random"], "freeze": ["all"], "optimizer": ["fresh"]},
                       "one", epochs=5)


def test_a_repeated_schedule_is_never_trained_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proposal equal to a RUNNING or COMPLETE trial's schedule is marked FAIL
    (``duplicate_of``) and another is asked; when the sampler proposes nothing new the
    session gives up with the reason (the budget stays unmet)."""
    from growsearch.search import searcher as searcher_mod

    monkeypatch.setattr(searcher_mod, "MAX_REPEATS", 4)
    s = _searcher(_study(tmp_path), budget=3, space=_one_schedule_space(), references=[])
    s.resync()
    c0 = s.suggest("r0")
    assert isinstance(c0, dict)
    assert s.suggest("r1") is None  # only repeats of trial 0 (RUNNING): nothing to train
    assert s.gave_up and "exhausted" in s.gave_up
    s.on_trial_complete("r0", _ok(0.2, 5))
    assert s.suggest("r2") == Searcher.FINISHED
    trials = _study(tmp_path).get_trials()
    dups = [t for t in trials if t.state == TrialState.FAIL]
    assert len(dups) == 4
    assert all(t.user_attrs["duplicate_of"] == 0 and "duplicate schedule" in t.user_attrs["fail_reason"] for t in dups)
    assert [t.number for t in trials if t.state == TrialState.COMPLETE] == [0]
    # a later session (repeats of a COMPLETE trial now) trains nothing either
    s2 = _searcher(_study(tmp_path), budget=3, space=_one_schedule_space(), references=[])
    s2.resync()
    assert s2.suggest("x") == Searcher.FINISHED
    assert len(_study(tmp_path).get_trials(states=(TrialState.COMPLETE,))) == 1


def test_a_fresh_proposal_equal_to_a_waiting_rerun_yields(tmp_path: Path) -> None:
    study = _study(tmp_path)
    space = _one_schedule_space()
    s = _searcher(study, budget=3, space=space, references=[])
    s.resync()
    s.suggest("r0")
    s.on_trial_complete("r0", {FINAL_KEY: False})  # cut off: FAIL + re-enqueued (WAITING)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    again = s.suggest("r1")  # the WAITING rerun runs, not a fresh twin of it
    assert again["resume_from"] == [0] and again["trial_number"] == 1


def test_failed_reference_is_rerun_by_the_next_session(tmp_path: Path) -> None:
    """A reference that FAILed (after its retries) does not count: the next session enqueues
    it again (and counts it as waiting); once the budget is met nothing is enqueued."""
    s = _searcher(_study(tmp_path), budget=2)
    assert s.resync()["waiting"] == 1
    c0, _ = s.suggest("a"), s.suggest("b")
    assert c0["reference"] == "baseline"
    s.on_trial_complete("a", NAN)
    s.on_trial_complete("b", _ok(0.2, 10))
    s.close("session over")
    s2 = _searcher(_study(tmp_path), budget=2)
    assert s2.resync() == {"complete": 1, "requeued": 0, "waiting": 1}
    c2 = s2.suggest("c")
    assert c2["reference"] == "baseline"
    s2.on_trial_complete("c", _ok(0.3, 5))
    s2.close("session over")
    refs = [t for t in _study(tmp_path).get_trials() if t.user_attrs.get("reference") == "baseline"]
    assert [t.state for t in refs] == [TrialState.FAIL, TrialState.COMPLETE]
    # budget met: a reference that failed again would not be enqueued, and nothing waits
    s3 = _searcher(_study(tmp_path), budget=2, references=[("other", GrowthSchedule.empty())])
    assert s3.resync() == {"complete": 2, "requeued": 0, "waiting": 0}


def test_read_only_storage_mid_session_stops_cleanly(tmp_path: Path) -> None:
    """A driver whose storage turns read-only (a real read-only SQLite connection): no
    exception reaches Ray Tune, the session stops asking with the cause named (not Optuna's
    'exceeding max length'), and closing does not raise."""
    _study(tmp_path)
    ro = open_storage(f"sqlite:///file:{tmp_path}/study.db?mode=ro&uri=true")
    study = optuna.load_study(study_name="s", storage=ro, sampler=TrialSeededSampler(optuna.samplers.RandomSampler(0), 0))
    s = _searcher(study, budget=3)
    assert s.suggest("a") == Searcher.FINISHED
    assert s.storage_error is not None and "read-only" in s.storage_error and "max length" not in s.storage_error
    s.close("over")
    with pytest.raises(optuna.exceptions.StorageInternalError) as info:
        study.set_user_attr("x", 1)
    assert storage_fault(info.value).startswith("the database is read-only")
    assert storage_fault(ValueError("bad")) is None


def _make_immutable(path: Path) -> bool:
    """Make ``path`` unwritable even for root (``chattr +i``), or by mode when not root."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_cli_read_only_storage_is_one_line(tmp_path: Path) -> None:
    """``growsearch run`` on a study whose SQLite file is read-only: one line naming the
    cause and the resume command, exit 1, no traceback."""
    p = _config(tmp_path, "random")
    db = tmp_path / "ro.db"
    study = optuna.create_study(study_name="repro-random", storage=open_storage(f"sqlite:///{db}"),
                                directions=["minimize", "minimize"])
    del study
    if not _make_immutable(db):
        pytest.skip("cannot make a file read-only here (chattr failed)")
    try:
        res = subprocess.run([GROWSEARCH, "run", str(p), "--storage", f"sqlite:///{db}"], capture_output=True,
                             text=True, timeout=300)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)])
    assert res.returncode == 1, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("growsearch: error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "read-only" in lines[0] and "max length" not in lines[0]
    assert f"resume with: growsearch run {p} --storage sqlite:///{db}" in lines[0]


def test_full_disk_inside_a_trial_fails_it_without_a_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real training into a trial folder on a full tmpfs: the trial ends with a final
    ``failed`` result naming the full disk (a retry would only fail again), instead of an
    exception that Ray Tune would retry as a crash."""
    import ray.tune

    from growsearch.search.runner import worker_train_config
    from growsearch.search.trainable import TrialContext, run_trial, trial_dir

    fs = tmp_path / "fs"
    fs.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(fs)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        cfg = load_study_config(_config(tmp_path, "random"))
        ctx = TrialContext(train=worker_train_config(cfg.train), space=cfg.space, trials_dir=str(fs / "trials"))
        out = trial_dir(ctx.trials_dir, 0)
        out.mkdir(parents=True)
        (out / ".attempts").write_text("0\n")
        try:  # fill the disk
            with open(fs / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        except OSError:
            pass
        reports: list[dict] = []
        monkeypatch.setattr(ray.tune, "report", reports.append)  # what the trial tells Tune, recorded
        run_trial({"trial_number": 0, "params": {}, "reference": "baseline",
                   "schedule": GrowthSchedule.empty().to_dict()}, ctx)
    finally:
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)
    assert reports and reports[-1][FINAL_KEY] is True
    payload = json.loads(reports[-1][PAYLOAD_KEY])
    assert payload["status"] == "failed" and payload["fail_reason"].startswith("disk full"), payload
