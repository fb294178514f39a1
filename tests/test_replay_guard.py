"""Replaying an export on another config: refused unless ``--force``, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from growsearch.report.export import export_document
from growsearch.report.front import load_study_data
from growsearch.search.attrs import STUDY_TRAIN_CONFIG_HASH
from growsearch.search.runner import open_study
from growsearch.search.study import load_study_config
from growsearch.train.config import load_train_config

from cli_run import run_cli

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "quickstart.yaml"



def _export(tmp_path: Path, train_hash: str | None) -> Path:
    doc = {"growsearch_export": 1, "study": "quickstart", "config_hash": "0123456789abcdef", "train_config_hash": train_hash,
           "schedules": [{"trial": 0, "seed": 42, "reference": "baseline", "schedule": {"version": 1, "events": []}}]}
    p = tmp_path / "best.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_study_records_and_export_carries_the_train_config_hash(tmp_path: Path) -> None:
    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    study = open_study(cfg, f"sqlite:///{tmp_path}/s.db")
    assert STUDY_TRAIN_CONFIG_HASH.get(study) == cfg.train.config_hash()
    doc = export_document(load_study_data(study), [], pick="knee")
    assert doc["train_config_hash"] == cfg.train.config_hash()
    # the study trained with the quickstart config: replaying on it matches
    assert load_train_config(CONFIG).config_hash() == cfg.train.config_hash()


def test_replay_on_another_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = _export(tmp_path, "ffffffffffffffff")
    rc, out, err = run_cli(["train", str(CONFIG), "--schedule", str(exp), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "ffffffffffffffff" in lines[0] and "--force" in lines[0] and str(CONFIG) in lines[0]
    assert not (tmp_path / "o").exists()


def test_force_replays_anyway_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"] = {"dataset": "asvspoof2019_la", "root": str(tmp_path / "no-corpus")}  # stops right after the check
    c = tmp_path / "c.yaml"
    c.write_text(yaml.safe_dump(cfg))
    exp = _export(tmp_path, load_train_config(CONFIG).config_hash())
    rc, _, err = run_cli(["train", str(c), "--schedule", str(exp), "--out", str(tmp_path / "o"), "--force"], capsys)
    assert "warning:" in err and "training anyway (--force)" in err
    assert rc == 2 and "no-corpus" in err.strip().splitlines()[-1]  # got past the check, to the data


def test_matching_or_unrecorded_hash_is_not_refused(tmp_path: Path) -> None:
    from growsearch.commands.train import export_mismatch

    cfg = load_train_config(CONFIG)
    assert export_mismatch(_export(tmp_path, cfg.config_hash()), cfg, CONFIG) is None
    assert export_mismatch(_export(tmp_path, None), cfg, CONFIG) is None  # an older export: nothing to compare
    assert export_mismatch(_export(tmp_path, "x"), cfg.with_overrides(seed=7), CONFIG) is not None
    assert cfg.with_overrides(seed=7).config_hash() == cfg.config_hash()  # the seed travels with the item
    assert cfg.with_overrides(epochs=2).config_hash() != cfg.config_hash()
