"""``growsearch run``: the paths that need no Ray (bad input, another config, budget met)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from growsearch.search.runner import open_study
from growsearch.search.study import load_study_config

from cli_run import run_cli

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data["space"] = str(ROOT / "search_spaces" / "quickstart.yaml")
    if isinstance(data.get("train"), str):  # a path relative to studies/
        data["train"] = str((ROOT / "studies" / data["train"]).resolve())
    data["outputs"] = str(tmp_path / "out")
    data.update(changes)
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(data))
    return p



def test_bad_study_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _study(tmp_path, sampler={"name": "cmaes"})
    rc, out, err = run_cli(["run", str(p)], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("growsearch: error: ") and "sampler.name" in err and str(p) in err
    assert "Traceback" not in err


def test_other_config_same_name_refused_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROWSEARCH_STORAGE", raising=False)
    url = f"sqlite:///{tmp_path}/s.db"
    open_study(load_study_config(_study(tmp_path)), url)
    p = _study(tmp_path, sampler={"name": "random", "seed": 5})
    rc, out, err = run_cli(["run", str(p), "--storage", url], capsys)
    assert rc == 2 and "config_hash" in err and "--study-name" in err


def test_budget_met_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://user:s3cret@127.0.0.1:1/x"  # a flag beats the environment ...
    monkeypatch.setenv("GROWSEARCH_STORAGE", url)
    p = _study(tmp_path)
    good = f"sqlite:///{tmp_path}/s.db"
    study = open_study(load_study_config(p), good)
    for _ in range(2):
        t = study.ask()
        study.tell(t, [0.3, 100.0, 1000.0])
    rc, out, err = run_cli(["run", str(p), "--storage", good, "--trials", "2"], capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["complete"] == 2 and summary["budget_reached"] is True
    assert "budget reached" in err
    # ... and a URL with a password is only ever printed redacted
    rc, out, err = run_cli(["run", str(p)], capsys)
    assert rc == 2 and "s3cret" not in err and "***" in err
