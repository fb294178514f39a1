"""The README's follow-up block, run as written (after the main job), against a small study
that the test makes in a project-like folder: ``studies/quickstart.yaml``,
``configs/quickstart.yaml`` (tiny: 3 epochs, 2 batches each) and ``runs/quickstart/study.db``
(a real SQLite study with growsearch's trial attributes). Every command must exit 0, the
export must hold the front's lowest-EER schedule, and the block's outputs must land under
``runs/``. The replay trains, so the test is slow."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def follow_up_block() -> list[str]:
    """The commands of the README's ```bash block after "Then look at the answer"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tail = text[text.index("Then look at the answer"):]
    block = re.search(r"```bash\n(.*?)```", tail, re.S)
    assert block, "the follow-up block is missing"
    return [ln.split("  #", 1)[0].strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def _project(tmp: Path) -> None:
    from synthetic_study import create_study, make_trial

    (tmp / "studies").mkdir()
    (tmp / "configs").mkdir()
    (tmp / "configs" / "quickstart.yaml").write_text(yaml.safe_dump({
        "seed": 42,
        "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000, "root": str(tmp / "data" / "synth")},
        "model": {"backbone": "lcgrnn", "preset": "tiny"},
        "training": {"epochs": 3, "batch_size": 8, "device": "cpu", "max_batches_per_epoch": 2, "max_eval_batches": 2},
    }))
    (tmp / "studies" / "quickstart.yaml").write_text(yaml.safe_dump({
        "name": "quickstart", "train": "../configs/quickstart.yaml", "space": str(ROOT / "search_spaces" / "quickstart.yaml"),
        "epochs": 3, "objectives": ["dev_eer", "params"], "budget": {"trials": 3}, "reference": ["baseline"],
    }))
    (tmp / "runs" / "quickstart").mkdir(parents=True)
    study = create_study(f"sqlite:///{tmp / 'runs' / 'quickstart' / 'study.db'}", "quickstart", ("dev_eer", "params"))
    grow = {"version": 1, "events": [{"point": "gru1", "epoch": 1, "neurons": 4, "init": "zero_fanout"}]}
    plast = {"version": 1, "events": [{"point": "gru2", "epoch": 1, "neurons": 4},
                                      {"point": "gru2", "epoch": 2, "action": "shrink"}]}
    study.add_trials([
        make_trial((0.30, 100.0), reference="baseline", seed=42),
        make_trial((0.20, 180.0), schedule=grow, seed=43),   # the lowest EER: what --pick min-eer exports
        make_trial((0.30, 100.0), schedule=plast, seed=44),  # ties with the baseline
    ])


def test_readme_follow_up_block_runs_as_written(tmp_path: Path) -> None:
    cmds = follow_up_block()
    assert any("--pick min-eer" in c for c in cmds), "the block must export the schedule the Results section discusses"
    _project(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    for cmd in cmds:
        argv = shlex.split(cmd)
        assert argv[0] == "growsearch", cmd
        full = [sys.executable, "-m", "growsearch", *argv[1:]]
        if argv[1] == "dashboard":  # serves until Ctrl-C: it must come up and print its URL
            full += ["--port", "0"]
            p = subprocess.Popen(full, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                url = p.stdout.readline() if p.stdout else ""
                assert url.startswith("http://127.0.0.1:"), (url, p.stderr.read() if p.poll() is not None and p.stderr else "")
            finally:
                p.terminate()
                p.wait(timeout=60)
            continue
        r = subprocess.run(full, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}\n{r.stderr}"
        assert "Traceback" not in r.stderr
    best = yaml.safe_load((tmp_path / "runs" / "best.yaml").read_text())
    assert [s["trial"] for s in best["schedules"]] == [1]
    assert (tmp_path / "runs" / "front.html").is_file() and (tmp_path / "runs" / "replay" / "metrics.json").is_file()
    made = {p for p in tmp_path.rglob("*") if p not in before and p.is_file()}
    stray = [p for p in made if not p.is_relative_to(tmp_path / "runs") and not p.is_relative_to(tmp_path / "data")]  # both ignored by git
    assert not stray, f"README commands wrote outside runs/: {stray}"
