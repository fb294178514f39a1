"""A trial's Ray worker killed by the system (SIGKILL, as Ray's memory monitor and the
kernel's OOM killer kill it) ends that trial FAIL with the reason; the driver goes on and
exits normally (real local Ray, real training; slow), and the error types Ray reports for it
are named as such."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from growsearch.search.progress import last_error_line, system_kill_reason
from growsearch.search.runner import _ray_failure
from growsearch.search.study import load_study_config
from growsearch.search.trainable import study_trials_dir, trial_dir
from test_search_ray import GROWSEARCH, write_study


def _trial_workers(session: int) -> list[int]:
    """PIDs of the Ray worker processes running a Tune trial (``ray::ImplicitFunc...``) in
    the session of the driver ``session`` (started with ``start_new_session``), so other Ray
    clusters on the machine are never touched."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        sid = int(stat[stat.rindex(")") + 2:].split()[3])  # fields after "(comm)": state ppid pgrp session
        if sid == session and cmd.startswith("ray::ImplicitFunc"):
            pids.append(int(d.name))
    return pids


def _wait_for(cond, timeout: float = 240.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("condition not reached")


@pytest.mark.slow
def test_worker_killed_like_the_memory_monitor_fails_the_trial(tmp_path: Path) -> None:
    corpus = tmp_path / "synth"
    p = write_study(tmp_path, corpus, "oom", budget=1, epochs=3,
                    execution={"retries": 0, "max_concurrent": 1, "epoch_delay_s": 1.0, "prefix_reuse": False})
    proc = subprocess.Popen([GROWSEARCH, "run", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tmp_path)
    try:
        cfg = load_study_config(p)
        ckpt = trial_dir(study_trials_dir(cfg.shared_dir, cfg.default_storage, "oom"), 0) / "checkpoint" / "state.pt"
        _wait_for(lambda: ckpt.is_file())  # the first trial is training (epoch 0 done)
        pids = _wait_for(lambda: _trial_workers(proc.pid))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(err)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    study = optuna.load_study(study_name="oom", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and states.count(TrialState.COMPLETE) == 1
    killed = study.trials[0]
    assert killed.state == TrialState.FAIL
    reason = killed.user_attrs["fail_reason"]
    assert reason.startswith("worker process has died (killed by the system"), reason
    assert f"trial #0 failed after its retries: {reason}" in err


# ---- the error types Ray reports for a killed worker ---------------------------------------------


def _error_file(tmp_path: Path, exc: BaseException) -> object:
    import traceback

    f = tmp_path / "error.txt"
    f.write_text("".join(traceback.format_exception(exc)))
    return type("T", (), {"error_file": str(f)})()


def test_out_of_memory_error_is_named(tmp_path: Path) -> None:
    from ray.exceptions import OutOfMemoryError

    exc = OutOfMemoryError("Task was killed due to the node running low on memory.\nMemory on the node (IP: 10.0.0.1) "
                           "was 7.60GB / 7.77GB (0.978), which exceeds the memory usage threshold of 0.95.\n"
                           "Refer to the documentation on how to address the out of memory issue: https://docs.ray.io/")
    reason = last_error_line(_error_file(tmp_path, exc))
    assert reason == ("out of memory: Ray's memory monitor killed the trial's worker process "
                      "(Task was killed due to the node running low on memory.)")
    assert _ray_failure(exc) == reason  # the same words when it escapes Ray Tune into the driver


def test_dead_worker_is_named(tmp_path: Path) -> None:
    from ray.exceptions import ActorDiedError, WorkerCrashedError

    for exc in (ActorDiedError(), WorkerCrashedError()):
        reason = last_error_line(_error_file(tmp_path, exc))
        assert reason.startswith("worker process has died (killed by the system: out of memory, SIGKILL, or a crash)")
        assert _ray_failure(exc).startswith("worker process has died")
    assert system_kill_reason("ValueError: bad") is None
    assert last_error_line(_error_file(tmp_path, ValueError("bad value"))) == "error: ValueError: bad value"
