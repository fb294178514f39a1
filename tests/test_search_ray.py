"""End to end on a real local Ray (2 CPUs), real training on the generated corpus, a real
SQLite (or PostgreSQL) study: completion, NaN trials, worker crashes, a SIGKILLed driver,
Ctrl-C, a wall-time budget, two drivers on one study and a two-node Ray cluster on one machine. All slow (run with ``-m slow``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from growsearch.errors import RunFailed
from growsearch.search.runner import run_study
from growsearch.search.study import load_study_config
from growsearch.search.trainable import study_trials_dir, trial_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GROWSEARCH = str(Path(sys.executable).with_name("growsearch"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_study(tmp_path: Path, corpus: Path, name: str, *, budget: int | None = 3, storage: str | None = None,
                reference: list[Any] | None = None, execution: dict[str, Any] | None = None,
                epochs: int = 3, wall_time: float | None = None) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "train": {
            "seed": 1,
            "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000, "root": str(corpus)},
            "model": {"backbone": "lcgrnn", "preset": "tiny"},
            "training": {"epochs": epochs, "batch_size": 8, "lr": 3.0e-3, "device": "cpu",
                         "max_batches_per_epoch": 2, "max_eval_batches": 2},
        },
        "space": str(ROOT / "search_spaces" / "quickstart.yaml"),
        "epochs": epochs,
        "objectives": ["dev_eer", "params"],
        "sampler": {"name": "nsga2", "seed": 0, "population_size": 4},
        "budget": {k: v for k, v in (("trials", budget), ("wall_time", wall_time)) if v is not None},
        "reference": reference if reference is not None else ["baseline"],
        "outputs": str(tmp_path / "out"),
        "execution": {"num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 2, "retries": 1, **(execution or {})},
    }
    if storage:
        data["storage"] = storage
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def check_consistent(study: optuna.Study, budget: int, epochs: int = 3) -> None:
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == budget
    ray_ids = [t.user_attrs["ray_trial_id"] for t in trials if "ray_trial_id" in t.user_attrs]
    assert len(ray_ids) == len(set(ray_ids)), "one Optuna trial per Ray trial"
    for t in done:
        assert len(t.values) == len(study.directions)
        for key in ("schedule", "curves", "metrics", "ray_trial_id", "node", "seed", "versions"):
            assert key in t.user_attrs, (t.number, key)
        assert len(t.user_attrs["curves"]["dev_eer"]) == epochs, t.user_attrs["curves"]
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("fail_reason"), t.number


def test_local_ray_study_with_nan_trial(tmp_path: Path, corpus: Path) -> None:
    """Real training; a reference schedule whose learning rate explodes ends FAIL with 'nan'
    (not retried), the budget still yields 3 COMPLETE trials."""
    explode = {"label": "explode", "schedule": {"events": [{"point": "gru2", "epoch": 1, "neurons": 4, "lr": 3.0e37}]}}
    p = write_study(tmp_path, corpus, "local", budget=3, reference=["baseline", explode])
    cfg = load_study_config(p)
    summary = run_study(cfg, progress_every=1.0)
    url = cfg.default_storage
    study = load(url, "local")
    check_consistent(study, 3)
    by_ref = {t.user_attrs.get("reference"): t for t in study.trials}
    assert by_ref["explode"].state == TrialState.FAIL and by_ref["explode"].user_attrs["fail_reason"] == "nan"
    assert by_ref["baseline"].state == TrialState.COMPLETE and by_ref["baseline"].user_attrs["schedule"]["events"] == []
    assert summary.complete == 3 and [r for _, r in summary.failed_session] == ["nan"]
    assert study.user_attrs["config_hash"] == cfg.config_hash()
    assert study.metric_names == ["dev_eer", "params"]
    assert "prefix_reuse" in study.user_attrs
    # NaN is deterministic: no restart happened (its folder was never resumed)
    trial_dirs = sorted(study_trials_dir(tmp_path / "out", url, "local").iterdir())
    assert len([d for d in trial_dirs if d.name.isdigit()]) == len([t for t in study.trials if "duplicate_of" not in t.user_attrs])
    # rerunning the same study with its budget met does nothing
    again = run_study(cfg)
    assert again.complete == 3 and len(load(url, "local").trials) == len(study.trials)


def test_worker_crash_resumes_or_fails(tmp_path: Path, corpus: Path) -> None:
    """The trial process dies hard after epoch 0 (first attempt): with retries it is restarted
    and resumes from its checkpoint; without retries it ends FAIL with the reason."""
    p = write_study(tmp_path, corpus, "crash", budget=1, execution={"crash_at_epoch": 0, "retries": 1, "max_concurrent": 1})
    cfg = load_study_config(p)
    run_study(cfg)
    study = load(cfg.default_storage, "crash")
    check_consistent(study, 1)
    t = study.best_trials[0]
    tdir = trial_dir(study_trials_dir(tmp_path / "out", cfg.default_storage, "crash"), t.number)
    assert (tdir / ".crashed_once").exists()
    assert len(t.user_attrs["curves"]["dev_eer"]) == 3  # resumed: 3 epochs recorded, not 1 + 3
    # the restarted attempt found the checkpoint the crashed one wrote after epoch 0
    assert t.user_attrs["attempt"] == {"attempts": 2, "resumed_checkpoint": True}

    p2 = write_study(tmp_path / "b", corpus, "crash0", budget=1,
                     execution={"crash_at_epoch": 0, "retries": 0, "max_concurrent": 1, "prefix_reuse": False})
    cfg2 = load_study_config(p2)
    with pytest.raises(RunFailed, match="gave up after 3 failed trials"):
        run_study(cfg2)
    study2 = load(cfg2.default_storage, "crash0")
    fails = [t for t in study2.trials if t.state == TrialState.FAIL]
    assert len(fails) == 3  # a session gives up after 3 failed trials when none completes
    assert all("worker process has died" in t.user_attrs["fail_reason"] for t in fails)
    assert not [t for t in study2.trials if t.state == TrialState.RUNNING]


#: Epochs of the kill / Ctrl-C studies, and the pause after each epoch (the ``epoch_delay_s``
#: test hook): every trial runs for 5 s or more on any machine, so the tests catch trials running
#: (without the pause a warm 20-epoch trial takes ~0.7 s here, and a one-second poll on a loaded
#: CI machine missed the window between one trial completing and the next one ending).
EPOCHS_LONG = 20
SLOW_TRIALS = {"epoch_delay_s": 0.25}


def _wait_for(pred: Any, timeout: float, what: str, log: Path | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.25)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def _counts(url: str, name: str) -> dict[str, int]:
    try:
        study = load(url, name)
    except Exception:  # noqa: BLE001 - not created yet (or locked mid-write): no counts this time
        return {}
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _descendants(pid: int) -> dict[int, str]:
    """Live descendants of ``pid`` (pid -> start time, so a reused pid is not mistaken)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19]
    out: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if p not in out:
            out[p] = starts.get(p, "")
            todo += children.get(p, [])
    return out


def _alive(procs: dict[int, str]) -> dict[int, str]:
    out = {}
    for pid, start in procs.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[19] == start and fields[0] != "Z":
            out[pid] = stat.split(" (", 1)[1].rsplit(")", 1)[0]
    return out


def _watchdog(procs: dict[int, str]) -> dict[int, str]:
    """The Ray watchdog (:mod:`growsearch.search.raywatch`) among ``procs``."""
    from growsearch.search import raywatch

    script = Path(raywatch.__file__).resolve().name.encode()
    out = {}
    for pid, start in procs.items():
        try:
            if script in Path(f"/proc/{pid}/cmdline").read_bytes():
                out[pid] = start
        except OSError:
            pass
    return out


def _ray_ends_with_driver(procs: dict[int, str], watchdog: dict[int, str], log: Path | None = None) -> None:
    """After the driver died: its watchdog (found among ``procs`` while the driver ran)
    finishes (polled), and at that point no process of its local Ray is left. (Without the
    watchdog, Ray's agents lived on for a minute or more, re-parented to PID 1.)"""
    assert watchdog, f"no Ray watchdog among the driver's processes: {procs}"
    _wait_for(lambda: not _alive(watchdog), 300, "the Ray watchdog to finish", log)
    assert not _alive(procs), _alive(procs)


def _kill_all(procs: dict[int, str]) -> None:
    """Teardown: kill what is left of ``procs``, but not the Ray watchdog (it cleans up and
    exits once the driver is gone)."""
    keep = _watchdog(procs)
    for pid in _alive(procs):
        if pid in keep:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def sigkill_driver_when(growsearch: str, study_yaml: Path, url: str, name: str,
                        pred: Callable[[list[optuna.trial.FrozenTrial]], bool], what: str,
                        log_path: Path) -> list[optuna.trial.FrozenTrial]:
    """Run ``growsearch run study_yaml`` in its own session, ``kill -9`` the driver once ``pred``
    holds for the study's trials, clean up what is left of its Ray, and return the trials as the
    kill left them (the driver's output goes to ``log_path``)."""
    log = open(log_path, "w")  # noqa: SIM115 - the driver writes it until it is killed
    proc = subprocess.Popen([growsearch, "run", str(study_yaml)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    ray_procs: dict[int, str] = {}

    def ready() -> bool:
        try:
            return pred(optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False))
        except Exception:  # noqa: BLE001 - not created yet
            return False

    try:
        _wait_for(ready, 600, what, log_path)
        ray_procs = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return optuna.load_study(study_name=name, storage=url).get_trials()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _kill_all(ray_procs)
        log.close()


def _distinct_complete(study: optuna.Study) -> None:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    keys = [json.dumps(t.user_attrs["schedule"], sort_keys=True) for t in done]
    assert len(set(keys)) == len(keys), "a schedule was trained twice"


def test_sigkill_driver_then_resume(tmp_path: Path, corpus: Path) -> None:
    """kill -9 the driver mid-study: no process of its local Ray outlives it; the same
    command resumes: nothing stays RUNNING, COMPLETE trials are kept, none is counted twice,
    every COMPLETE trial is a distinct schedule, and an interrupted trial continues from its
    last checkpoint with the result an uninterrupted run gives."""
    from growsearch.backbones.checkpoint import read_checkpoint
    from growsearch.search.runner import worker_train_config
    from growsearch.train.loop import train
    from growsearch.train.state import CHECKPOINT_DIR, STATE_FILE

    budget = 4
    # trials of 10 s or more: the one found RUNNING with a checkpoint is still running when killed
    p = write_study(tmp_path, corpus, "killed", budget=budget, epochs=EPOCHS_LONG, execution={"epoch_delay_s": 0.5})
    cfg = load_study_config(p)
    url = cfg.default_storage
    trials_dir = study_trials_dir(cfg.shared_dir, url, "killed")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - the driver writes it for the whole test
    proc = subprocess.Popen([GROWSEARCH, "run", str(p)], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    ray_procs: dict[int, str] = {}

    def early_checkpoint(path: Path) -> bool:
        # a checkpoint of the first half of the run: the trial is still training when killed
        # (the trial that started with the first COMPLETE one is on its last epochs)
        try:
            return int(read_checkpoint(path)["extra"]["epoch"]) <= EPOCHS_LONG // 2
        except Exception:  # noqa: BLE001 - being replaced right now: look again
            return False

    def running_with_checkpoint() -> bool:
        study = load(url, "killed")
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return bool(done) and any(early_checkpoint(trial_dir(trials_dir, t.number) / CHECKPOINT_DIR / STATE_FILE)
                                  for t in running)

    try:
        _wait_for(lambda: "[growsearch] study" in (tmp_path / "first.log").read_text(), 300, "the study to be created",
                  tmp_path / "first.log")
        _wait_for(running_with_checkpoint, 300, "one COMPLETE trial and a RUNNING one with a checkpoint", tmp_path / "first.log")
        ray_procs = _descendants(proc.pid)
        names, watchdog = _alive(ray_procs), _watchdog(ray_procs)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert any("raylet" in n or "gcs_server" in n for n in names.values()), names
        before = {t.number: t.values for t in load(url, "killed").trials if t.state == TrialState.COMPLETE}
        _ray_ends_with_driver(ray_procs, watchdog)  # nothing of the dead driver's Ray stays
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _kill_all(ray_procs)
        log.close()
    assert _counts(url, "killed").get("RUNNING", 0) >= 1  # the dead driver left trials RUNNING
    res = subprocess.run([GROWSEARCH, "run", str(p)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "re-enqueued" in res.stderr
    study = load(url, "killed")
    check_consistent(study, budget, epochs=EPOCHS_LONG)
    _distinct_complete(study)
    after = {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}
    for n, v in before.items():
        assert after[n] == v  # kept, not rerun
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("driver" in t.user_attrs["fail_reason"] for t in failed)
    by_number = {t.number: t for t in study.trials}
    reran = [t for t in study.trials if t.state == TrialState.COMPLETE and "requeued_from" in t.user_attrs]
    # each interrupted trial that had its whole proposal ran again, once (one killed between ask
    # and its last parameter has nothing to rerun: see test_search_searcher)
    had = [t.number for t in failed if "schedule" in t.user_attrs or t.system_attrs.get("fixed_params") is not None]
    assert sorted(t.user_attrs["requeued_from"] for t in reran) == sorted(had)
    resumed = [t for t in reran if t.user_attrs["attempt"].get("resumed_from_trial") is not None]
    assert resumed, [t.user_attrs["attempt"] for t in reran]
    for t in reran:
        prev = by_number[t.user_attrs["requeued_from"]]
        assert t.params == prev.params and t.user_attrs.get("reference") == prev.user_attrs.get("reference")
    # resuming is exact: an uninterrupted run of the same schedule gives the same values
    t = resumed[0]
    from growsearch.schedule import GrowthSchedule

    fresh = train(worker_train_config(cfg.train), GrowthSchedule.from_dict(t.user_attrs["schedule"]),
                  out_dir=tmp_path / "fresh", resume=False)
    assert [fresh.metrics[k] for k in ("dev_eer", "params")] == t.values


def test_ctrl_c_stops_cleanly(tmp_path: Path, corpus: Path) -> None:
    p = write_study(tmp_path, corpus, "sigint", budget=4, epochs=EPOCHS_LONG, execution=SLOW_TRIALS)
    cfg = load_study_config(p)
    url = cfg.default_storage
    proc = subprocess.Popen([GROWSEARCH, "run", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for(lambda: Path(url[len("sqlite:///"):]).exists(), 300, "the study database")
        time.sleep(3.0)
        _wait_for(lambda: _counts(url, "sigint").get("RUNNING", 0) >= 1, 300, "a RUNNING trial")
        time.sleep(3.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "resume with: growsearch run" in err
    counts = _counts(url, "sigint")
    assert counts.get("RUNNING", 0) == 0
    assert counts.get("WAITING", 0) >= 1  # the interrupted trials wait to rerun


def test_wall_time_budget_stops_and_next_session_resumes(tmp_path: Path, corpus: Path) -> None:
    """A wall-time budget alone: the session ends by itself (exit 0, not an interrupt), trials
    it cut off end FAIL with the reason and wait re-enqueued, nothing stays RUNNING; the next
    session runs those re-enqueued schedules first, from their checkpoints.

    Nothing here depends on how busy the machine is: trials outlast the wall time many times
    over, sessions are repeated until one has cut a trial off, and the second session runs
    until one more trial is COMPLETE (a trial budget, not the clock)."""
    wall = 20.0
    p = write_study(tmp_path, corpus, "walled", budget=None, wall_time=wall, epochs=EPOCHS_LONG,
                    execution={"epoch_delay_s": 2.0})
    url = load_study_config(p).default_storage
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(4):  # a session on a very busy machine may end before its first trial starts
        first = subprocess.run([GROWSEARCH, "run", str(p)], capture_output=True, text=True, env=env, timeout=900)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "interrupted" not in first.stderr
        summary = json.loads(first.stdout)
        assert summary["interrupted"] is False and summary["budget_reached"] is False
        study = load(url, "walled")
        assert TrialState.RUNNING not in [t.state for t in study.trials]
        assert summary["complete"] == len([t for t in study.trials if t.state == TrialState.COMPLETE])
        cut = [t for t in study.trials if t.state == TrialState.FAIL]
        if cut:
            break
    assert cut and all("wall-time budget" in t.user_attrs["fail_reason"] for t in cut)
    waiting = {t.user_attrs["requeued_from"]: t for t in study.trials if t.state == TrialState.WAITING}
    assert sorted(waiting) == sorted(t.number for t in cut)
    for t in cut:  # the same schedule waits to rerun
        w = waiting[t.number]
        assert w.system_attrs.get("fixed_params", {}) == t.params or w.user_attrs.get("reference") == t.user_attrs.get("reference")

    done = summary["complete"]
    fast = write_study(tmp_path, corpus, "walled", budget=None, wall_time=3600, epochs=EPOCHS_LONG)  # same study
    second = subprocess.run([GROWSEARCH, "run", str(fast), "--trials", str(done + len(waiting))], capture_output=True,
                            text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    study = load(url, "walled")
    by_number = {t.number: t for t in study.trials}
    reran = [by_number[w.number] for w in waiting.values()]
    assert all(t.state == TrialState.COMPLETE for t in reran)  # the first trials the new session ran
    for t in reran:
        if not t.user_attrs.get("reference"):
            assert t.params == by_number[t.user_attrs["requeued_from"]].params
    from growsearch.train.state import CHECKPOINT_DIR, STATE_FILE

    trials_dir = study_trials_dir(load_study_config(p).shared_dir, url, "walled")
    for t in reran:  # each continued from the checkpoint its cut-off predecessor left, if any
        prev = t.user_attrs["requeued_from"]
        if (trial_dir(trials_dir, prev) / CHECKPOINT_DIR / STATE_FILE).is_file():
            assert t.user_attrs["attempt"].get("resumed_from_trial") == prev, t.user_attrs["attempt"]
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    _distinct_complete(study)


def test_failed_reference_is_rerun_and_a_run_that_gives_up_exits_1(tmp_path: Path, corpus: Path) -> None:
    """Every trial of a session crashes (no retries): the run gives up with the budget unmet,
    exit 1, one line with the reason and the resume command, nothing RUNNING. The baseline it
    failed counts as missing: the next session (``--trials``) lists it as waiting and runs it."""
    p = write_study(tmp_path, corpus, "giveup", budget=1,
                    execution={"crash_at_epoch": 0, "retries": 0, "max_concurrent": 1, "prefix_reuse": False})
    url = load_study_config(p).default_storage
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.run([GROWSEARCH, "run", str(p)], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 1, first.stderr[-3000:]
    errors = [ln for ln in first.stderr.splitlines() if ln.startswith("growsearch: error:")]
    assert len(errors) == 1 and "Traceback" not in first.stderr, first.stderr[-3000:]
    assert "gave up after 3 failed trials" in errors[0] and "0 COMPLETE trials of the budget of 1" in errors[0]
    assert errors[0].endswith(f"resume with: growsearch run {p}")
    study = load(url, "giveup")
    assert {t.state for t in study.trials} == {TrialState.FAIL}
    assert [t.user_attrs.get("reference") for t in study.trials].count("baseline") == 1

    fixed = write_study(tmp_path, corpus, "giveup", budget=1, execution={"max_concurrent": 1})  # same study, no crash
    second = subprocess.run([GROWSEARCH, "run", str(fixed), "--trials", "2"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 complete, 1 waiting" in second.stderr
    study = load(url, "giveup")
    base = [t for t in study.trials if t.user_attrs.get("reference") == "baseline"]
    assert [t.state for t in base] == [TrialState.FAIL, TrialState.COMPLETE]
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2
    assert TrialState.RUNNING not in [t.state for t in study.trials]


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_disk_full_mid_run_is_one_line_and_the_rerun_resumes(tmp_path: Path, corpus: Path) -> None:
    """The study's SQLite file lives on a small tmpfs that fills up while trials run: the
    driver ends with one line naming the full disk and the resume command (exit 1, no
    traceback), its Ray gone; once space is freed the same command finishes the study with
    nothing RUNNING."""
    fs = tmp_path / "fs"
    if not _mount_tmpfs(fs, "4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk case is covered without it "
                    "only by test_search_integrity's read-only storage tests")
    ray_procs: dict[int, str] = {}
    try:
        url = f"sqlite:///{fs}/study.db"
        budget = 4
        p = write_study(tmp_path, corpus, "full", budget=budget, storage=url, epochs=EPOCHS_LONG, execution=SLOW_TRIALS)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log, errlog = open(tmp_path / "full.out", "w"), open(tmp_path / "full.err", "w")  # noqa: SIM115 - the driver's, for the test
        proc = subprocess.Popen([GROWSEARCH, "run", str(p)], stdout=log, stderr=errlog, env=env, start_new_session=True)
        try:
            _wait_for(lambda: (lambda c: c.get("COMPLETE", 0) >= 1 and c.get("RUNNING", 0) >= 1)(_counts(url, "full")),
                      300, "one COMPLETE and one RUNNING trial")
            ray_procs = _descendants(proc.pid)
            watchdog = _watchdog(ray_procs)
            with open(fs / "filler", "wb") as f:  # fill the disk
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            log.close()
            errlog.close()
        err = (tmp_path / "full.err").read_text()
        _ray_ends_with_driver(ray_procs, watchdog)
        assert proc.returncode == 1, err[-3000:]
        errors = [ln for ln in err.splitlines() if ln.startswith("growsearch: error:")]
        assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
        assert "the disk is full" in errors[0] and f"resume with: growsearch run {p}" in errors[0], errors[0]
        (fs / "filler").unlink()
        res = subprocess.run([GROWSEARCH, "run", str(p)], capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        study = load(url, "full")
        check_consistent(study, budget, epochs=EPOCHS_LONG)
        _distinct_complete(study)
    finally:
        _kill_all(ray_procs)
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)


def test_a_driver_whose_heartbeat_keeps_failing_stops_and_the_rerun_resumes(tmp_path: Path, corpus: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Once trials run, every heartbeat of the driver fails: after
    ``execution.heartbeat_max_failures`` in a row the run ends (RunFailed naming it), its running
    trials FAIL with the reason and are re-enqueued, its lease is released; a rerun finishes."""
    from growsearch.search import lease as lease_mod

    real_beat = lease_mod.DriverLease.beat

    def failing_beat(self: lease_mod.DriverLease) -> None:
        with self.lock:
            running = list(self.running_ids())
        if running:
            raise OSError("injected: the heartbeat cannot reach the database")
        real_beat(self)

    monkeypatch.setattr(lease_mod, "HEARTBEAT_INTERVAL", 0.5)
    monkeypatch.setattr(lease_mod.DriverLease, "beat", failing_beat)
    p = write_study(tmp_path, corpus, "beatless", budget=2, epochs=EPOCHS_LONG,
                    execution={"heartbeat_max_failures": 3, "epoch_delay_s": 0.5})
    cfg = load_study_config(p)
    t0 = time.time()
    with pytest.raises(RunFailed, match="heartbeat failed 3 times in a row") as exc:
        run_study(cfg)
    assert "rerun the same command to resume" in str(exc.value) and "injected" in str(exc.value)
    assert time.time() - t0 < 240  # it stopped: 2 trials of 20 epochs at 0.5 s would take longer
    url = cfg.default_storage
    study = load(url, "beatless")
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all("heartbeat kept failing" in t.user_attrs["fail_reason"] for t in failed), \
        [t.user_attrs.get("fail_reason") for t in failed]
    assert len([t for t in trials if t.state == TrialState.WAITING]) == len(failed)
    leases = [v for k, v in study.user_attrs.items() if k.startswith("driver:")]
    assert leases and all(v.get("stopped") for v in leases)
    monkeypatch.undo()
    run_study(cfg)
    check_consistent(load(url, "beatless"), 2, epochs=EPOCHS_LONG)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_url() -> str | None:
    url = os.environ.get("GROWSEARCH_TEST_POSTGRES_URL")
    if not url:
        return None
    from growsearch.search.storage import open_storage

    try:
        open_storage(url)
    except Exception:  # noqa: BLE001 - no usable server: the test skips
        return None
    return url


def test_postgres_study(tmp_path: Path, corpus: Path) -> None:
    url = _postgres_url()
    if url is None:
        pytest.skip("GROWSEARCH_TEST_POSTGRES_URL is unset or the server is unreachable")
    name = f"pg_{int(time.time())}"
    p = write_study(tmp_path, corpus, name, budget=2, storage=url)
    run_study(load_study_config(p))
    check_consistent(load(url, name), 2)


def test_two_drivers_one_study(tmp_path: Path, corpus: Path) -> None:
    """Two ``growsearch run`` processes of one study at once (each its own local Ray with one
    CPU), sharing its storage (PostgreSQL when GROWSEARCH_TEST_POSTGRES_URL is set, else one
    SQLite file): both run trials, neither fails the other's, the reference runs once, and the
    study ends with the budget of COMPLETE trials (at most one over: both drivers may ask the
    last free slot at the same instant) and nothing RUNNING or WAITING."""
    budget = 6
    url = _postgres_url() or f"sqlite:///{tmp_path}/shared.db"
    name = f"two_drivers_{int(time.time())}"
    p = write_study(tmp_path, corpus, name, budget=budget, storage=url, epochs=EPOCHS_LONG,
                    execution={"num_cpus": 1, "max_concurrent": 1, **SLOW_TRIALS})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    from growsearch.search.storage import open_storage

    open_storage(url)  # the tables exist: two drivers creating a new database at once is tested on its own
    logs = [open(tmp_path / f"driver{i}.log", "w") for i in range(2)]  # noqa: SIM115 - the drivers', for the test
    procs = [subprocess.Popen([GROWSEARCH, "run", str(p)], stdout=f, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True) for f in logs]
    try:
        for proc in procs:
            proc.wait(timeout=540)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        for f in logs:
            f.close()
    out = [(tmp_path / f"driver{i}.log").read_text() for i in range(2)]
    assert [proc.returncode for proc in procs] == [0, 0], "\n---\n".join(o[-3000:] for o in out)
    study = load(url, name)
    trials = study.get_trials()
    states = [t.state for t in trials]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert budget <= len(done) <= budget + 1, len(done)
    for t in trials:
        if t.state == TrialState.FAIL:  # only a duplicate (a reference, a repeated schedule) may be skipped
            assert t.user_attrs["fail_reason"].startswith("duplicate "), t.user_attrs["fail_reason"]
    assert [t.user_attrs.get("reference") for t in done].count("baseline") == 1
    _distinct_complete(study)  # the two drivers' samplers did not replay each other's proposals
    tokens = {t.user_attrs["driver"] for t in done}
    leases = {k: v for k, v in study.user_attrs.items() if k.startswith("driver:")}
    assert len(leases) == 2 and all(v["stopped"] for v in leases.values())
    assert len(tokens) == 2, "both drivers ran trials"
    ray_ids = [t.user_attrs["ray_trial_id"] for t in trials if "ray_trial_id" in t.user_attrs]
    assert len(ray_ids) == len(set(ray_ids))
    for t in done:
        assert len(t.user_attrs["curves"]["dev_eer"]) == EPOCHS_LONG


def test_two_node_cluster(tmp_path: Path, corpus: Path) -> None:
    """A head and a worker node (1 CPU each) on this machine; ``growsearch run --address``
    runs trials on both and they land in one study (PostgreSQL when
    GROWSEARCH_TEST_POSTGRES_URL is set, else SQLite).

    Each node is a ``ray start --block`` process of this test (own temp dir, so no other Ray
    user on the machine finds this cluster); teardown stops exactly those processes. Every
    Ray client runs in a subprocess: this test process may hold another Ray session's state.
    """
    import tempfile

    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="gsray", dir="/tmp")
    url = _postgres_url() or f"sqlite:///{tmp_path}/cluster.db"
    name = f"cluster_{int(time.time())}"
    # this private cluster does not depend on the shared ~/.ray/auth_token
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    nodes: list[subprocess.Popen] = []
    logs = [open(tmp_path / f"node{i}.log", "w") for i in range(2)]  # noqa: SIM115 - the nodes', for the test
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
             "print(len([n for n in ray.nodes() if n['Alive']]))")

    def _alive() -> int:
        r = subprocess.run([sys.executable, "-c", probe, addr], capture_output=True, text=True, env=env, timeout=120)
        lines = r.stdout.strip().splitlines()
        return int(lines[-1]) if r.returncode == 0 and lines and lines[-1].isdigit() else 0

    try:
        nodes.append(subprocess.Popen(
            [ray_bin, "start", "--block", "--head", f"--port={port}", "--num-cpus=1", "--num-gpus=0",
             "--include-dashboard=false", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}"],
            stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True, env=env))
        _wait_for(lambda: _alive() == 1, 180, "the head node")
        nodes.append(subprocess.Popen(
            [ray_bin, "start", "--block", f"--address={addr}", "--num-cpus=1", "--num-gpus=0",
             "--node-ip-address=127.0.0.1"],
            stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True, env=env))
        _wait_for(lambda: _alive() == 2, 180, "two alive Ray nodes")
        p = write_study(tmp_path, corpus, name, budget=4, storage=url,
                        execution={"max_concurrent": 2, "cpus_per_trial": 1, "epoch_delay_s": 1.0})
        res = subprocess.run([GROWSEARCH, "run", str(p), "--address", addr], capture_output=True, text=True,
                             env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        study = load(url, name)
        check_consistent(study, 4)
        used = {t.user_attrs["node"]["node_id"] for t in study.trials if t.state == TrialState.COMPLETE}
        assert len(used) == 2, used
    finally:
        for proc in reversed(nodes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
        for f in logs:
            f.close()
