"""Progress of ``growsearch run`` on stderr: a live display on a terminal (a pty here), plain
lines in a pipe; per-epoch results of running trials; an ETA only from measured trial times;
``--quiet`` and ``--verbose``; nothing on stdout but the JSON summary."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from growsearch.search.console import Console

ROOT = Path(__file__).resolve().parents[1]
ESC = "\x1b["


def _pty_stream() -> tuple[Any, int]:
    """A writable terminal stream (the pty's slave side) and the master fd to read it back."""
    master, slave = pty.openpty()
    return os.fdopen(slave, "w", encoding="utf-8", closefd=True), master


def _drain(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode("utf-8", "replace")


def test_console_on_a_terminal_draws_a_region_below_the_log() -> None:
    stream, master = _pty_stream()
    c = Console(stream)
    assert c.live
    c.phase("starting Ray")
    c.region(["[##--] 1/4 complete", "  #3 trial line"])
    c.line("[growsearch] trial #4 started")
    c.region(["[###-] 2/4 complete"])
    c.close()
    text = _drain(master)
    stream.close()
    os.close(master)
    assert "[growsearch] starting Ray" in text and "trial #4 started" in text
    # the log line is written after erasing the two-line region, then the region is redrawn
    i = text.index("trial #4 started")
    assert text.rfind(f"{ESC}1A{ESC}2K" * 2, 0, i) > text.index("#3 trial line")
    assert text.index("1/4 complete", i) > i
    assert text.index("2/4 complete") > i and text.rstrip().endswith(f"{ESC}1A{ESC}2K")


def test_console_in_a_pipe_is_plain_lines() -> None:
    buf = io.StringIO()
    c = Console(buf)
    assert not c.live
    c.phase("importing Ray Tune")
    c.region(["[##--] 1/4 complete"])
    c.line("verbose only", level=2)
    c.close()
    assert buf.getvalue() == "[growsearch] importing Ray Tune\n"


def test_quiet_and_verbose() -> None:
    q, v = io.StringIO(), io.StringIO()
    for c in (Console(q, verbosity=0), Console(v, verbosity=2)):
        c.phase("starting Ray")
        c.line("epoch line", level=2)
        c.warn("a warning")
    assert q.getvalue() == "a warning\n"
    assert v.getvalue() == "[growsearch] starting Ray\nepoch line\na warning\n"


# ---- the Tune callback with a real study and searcher ------------------------------------------
def _searcher(tmp_path: Path) -> Any:
    from growsearch.search.runner import open_study
    from growsearch.search.searcher import StudySearcher
    from growsearch.search.study import load_study_config

    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(train=str(ROOT / "configs" / "quickstart.yaml"), space=str(ROOT / "search_spaces" / "quickstart.yaml"),
                outputs=str(tmp_path / "out"), budget={"trials": 4})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    cfg = load_study_config(p)
    study = open_study(cfg, f"sqlite:///{tmp_path}/s.db")
    searcher = StudySearcher(study, cfg.space, objectives=cfg.objective_names, budget_trials=4,
                             references=[(r.label, r.schedule) for r in cfg.reference], seed=cfg.train.seed)
    searcher.resync()  # enqueues the baseline reference, as the runner does
    return cfg, searcher


def _trial(searcher: Any, tid: str) -> SimpleNamespace:
    """What Tune hands the callback: the trial id and the config the searcher suggested."""
    return SimpleNamespace(trial_id=tid, config=searcher.suggest(tid), error_file=None)


@pytest.mark.parametrize("terminal", [True, False])
def test_callback_shows_each_trial_epoch_and_eer(tmp_path: Path, terminal: bool) -> None:
    from growsearch.search.progress import ProgressCallback
    from growsearch.search.searcher import FINAL_KEY

    cfg, searcher = _searcher(tmp_path)
    if terminal:
        stream, master = _pty_stream()
    else:
        stream = io.StringIO()
    console = Console(stream, verbosity=2)
    cb = ProgressCallback(searcher, concurrency=2, stream=stream, every=0.0, epochs=cfg.epochs, console=console)
    cb._print = lambda text: console.line(text)  # as the runner wires it (say = the console)
    t0, t1 = _trial(searcher, "a"), _trial(searcher, "b")
    cb.on_trial_start(0, [], t0)
    cb.on_trial_start(0, [], t1)
    cb.on_trial_result(0, [], t0, {"epoch": 0, "dev_eer": 0.4, FINAL_KEY: False})
    cb.on_trial_result(0, [], t0, {"epoch": 1, "dev_eer": 0.3125, FINAL_KEY: False})
    cb.on_trial_result(0, [], t1, {"epoch": 0, "dev_eer": None, FINAL_KEY: False})
    assert cb.eta() is None  # no trial has finished: no ETA
    cb.on_step_end(0, [])
    lines = cb.region_lines()
    assert lines[0].startswith("[") and "0/4 complete, 2 running" in lines[0] and "ETA" not in lines[0]
    assert any(f"2/{cfg.epochs} epochs" in ln and "dev EER 0.3125" in ln and "no growth" in ln for ln in lines[1:]), lines
    searcher.durations.append(60.0)
    assert cb.eta() == pytest.approx(120.0, abs=1.0)  # 4 left, 2 at a time, 60 s each
    if terminal:
        console.close()
        text = _drain(master)
        stream.close()
        os.close(master)
        assert ESC in text and "dev EER 0.3125" in text
    else:
        text = stream.getvalue()
        assert ESC not in text
        status = [ln for ln in text.splitlines() if "complete," in ln]
        assert status and f"#{t0.config['trial_number']} 2/{cfg.epochs} epochs EER 0.3125" in status[-1]
    assert "started: reference 'baseline': no growth" in text
    assert f"trial #{t0.config['trial_number']} epoch 1 (2/{cfg.epochs} epochs): dev EER 0.3125" in text


# ---- the command end to end (real Ray) ------------------------------------------------------------
def _tiny_study(tmp_path: Path, corpus: Path) -> Path:
    data = {
        "name": "progress",
        "train": {"seed": 1, "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000,
                                      "root": str(corpus)},
                  "model": {"backbone": "lcgrnn", "preset": "tiny"},
                  "training": {"epochs": 3, "batch_size": 8, "device": "cpu", "max_batches_per_epoch": 2, "max_eval_batches": 2}},
        "space": str(ROOT / "search_spaces" / "quickstart.yaml"), "epochs": 3,
        "objectives": ["dev_eer", "params"], "sampler": {"name": "random", "seed": 0},
        "budget": {"trials": 2}, "reference": ["baseline"], "outputs": str(tmp_path / "out"),
        "execution": {"num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 2, "retries": 0},
    }
    p = tmp_path / "progress.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.slow
def test_run_progress_in_a_pipe_and_on_a_terminal(tmp_path: Path, corpus: Path) -> None:
    study = _tiny_study(tmp_path, corpus)
    cmd = [sys.executable, "-m", "growsearch", "run", str(study)]
    r = subprocess.run([*cmd, "--verbose"], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["complete"] == 2  # stdout: the summary only
    err = r.stderr
    assert ESC not in err
    for phase in ("[growsearch] read ", "; importing Ray Tune", "[growsearch] creating the study", "[growsearch] starting Ray"):
        assert phase in err, err
    first_status = next(i for i, ln in enumerate(err.splitlines()) if re.match(r"\[growsearch\] \d+/\d+ complete, ", ln))
    first_start = next(i for i, ln in enumerate(err.splitlines()) if "started:" in ln)
    assert " 0 running" in err.splitlines()[first_status] or first_start < first_status  # never "running" before a start
    assert "started: reference 'baseline': no growth" in err
    assert "epoch 2 (3/3 epochs)" in err  # per-epoch results reached the driver
    # on a terminal: the live region, then (with --trials 3) one more trial
    master, slave = pty.openpty()
    p = subprocess.Popen([*cmd, "--trials", "3"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                         cwd=tmp_path, text=True)
    os.close(slave)
    chunks = []
    while True:
        ready = select.select([master], [], [], 1.0)[0]
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if data:
                chunks.append(data)
                continue
        if p.poll() is not None and not ready:
            break
        if ready and not data:
            break
    out = p.stdout.read() if p.stdout else ""
    assert p.wait(timeout=600) == 0
    os.close(master)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert json.loads(out)["complete"] == 3
    assert ESC in tty and "2/3 complete" in tty and "epochs" in tty
