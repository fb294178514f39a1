"""Export -> replay: a schedule exported from a study and replayed with
``growsearch train CONFIG --schedule best.yaml`` gives the same parameters, FLOPs and (on
CPU, same seed) the same dev EER as the trial that produced it. Uses the real trainer."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from synthetic_study import create_study, make_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = {"version": 1, "events": [{"point": "stage2", "epoch": 1, "neurons": 4, "form": "inplace", "init": "random"}]}


def _config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    cfg["data"]["root"] = str(tmp_path / "synth")
    cfg["training"]["epochs"] = 2
    cfg["training"]["device"] = "cpu"
    cfg["training"]["max_batches_per_epoch"] = 2
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _growsearch(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "growsearch", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["current", "legacy"])
def test_export_then_train_replays_exactly(tmp_path: Path, spelling: str) -> None:
    """``legacy``: the trial's schedule is stored as studies made before ``optimizer_state``
    stored it (``optimizer``); the export writes the current spelling and replays the same."""
    from growsearch.schedule import GrowthSchedule, legacy_spelling
    from growsearch.train.config import load_train_config
    from growsearch.train.loop import train

    cfg_path = _config(tmp_path)
    seed = 7
    cfg = load_train_config(cfg_path).with_overrides(seed=seed)
    sched = GrowthSchedule.from_dict(SCHEDULE)
    res = train(cfg, sched, out_dir=tmp_path / "trial", resume=False, log=lambda m: None)  # what a search trial runs
    m = res.metrics
    values = (float(m["dev_eer"]), float(m["params"]), float(m["flops"]))

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = create_study(url, "replay")
    study.add_trials([
        make_trial(values, schedule=legacy_spelling(sched.to_dict()) if spelling == "legacy" else sched.to_dict(), seed=seed,
                   curves={"dev_eer": [e.get("dev_eer") for e in m.get("epochs", [])]}),
        make_trial((values[0] + 0.5, values[1] + 1, values[2] + 1), seed=1),  # dominated
    ])
    best = tmp_path / "best.yaml"
    _growsearch("export", "replay", "--storage", url, "-o", str(best), "--pick", "min-eer")
    doc = yaml.safe_load(best.read_text())
    item = doc["schedules"][0]
    assert item["trial"] == 0 and item["seed"] == seed and doc["config_hash"] == study.user_attrs["config_hash"]
    assert item["schedule"] == sched.to_dict() and "optimizer_state" in item["schedule"]["events"][0]

    out = _growsearch("train", str(cfg_path), "--schedule", str(best), "--seed", str(item["seed"]), "--out", str(tmp_path / "replay"), "--no-resume")
    again = json.loads(out.stdout)
    assert int(again["params"]) == int(m["params"]) == int(item["values"]["params"])
    assert float(again["flops"]) == float(m["flops"]) == item["values"]["flops"]
    assert float(again["dev_eer"]) == float(m["dev_eer"]) == item["values"]["dev_eer"]
