"""Study configs: shipped studies load; errors name file and key; identity and storage rules."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from growsearch.errors import ConfigError
from growsearch.search.attrs import STUDY_CONFIG, STUDY_CONFIG_HASH, STUDY_OBJECTIVES, VERSIONS, study_objectives
from growsearch.search.runner import make_sampler, open_study
from growsearch.search.storage import storage_url_from
from growsearch.search.study import load_study_config, parse_duration, smoke_config
from growsearch.vocabulary import OBJECTIVES

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_studies_load(path: Path) -> None:
    cfg = load_study_config(path)
    assert cfg.train.training.epochs == cfg.epochs
    assert cfg.space.backbone == cfg.train.model.backbone
    assert cfg.space.epochs == cfg.epochs
    assert set(cfg.objective_names) <= set(OBJECTIVES)
    make_sampler(cfg)
    assert len(cfg.config_hash()) == 16


def _write(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data["space"] = str(ROOT / "search_spaces" / "quickstart.yaml")
    if isinstance(data.get("train"), str):  # a path relative to studies/
        data["train"] = str((ROOT / "studies" / data["train"]).resolve())
    for k, v in changes.items():
        data[k] = v
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"colour": 1}, "colour"),
        ({"sampler": {"name": "cmaes"}}, "sampler.name"),
        ({"objectives": ["dev_eer", "accuracy"]}, "objectives[1].name"),
        ({"objectives": ["dev_eer", "dev_eer"]}, "duplicate"),
        ({"budget": {}}, "budget"),
        ({"budget": {"trials": 3, "wall_time": "soon"}}, "budget.wall_time"),
        ({"epochs": 2}, "epoch.high: 2 is beyond the run"),
        ({"reference": ["baseline", {"label": "x", "schedule": {"events": [{"point": "gru7", "epoch": 1, "neurons": 4}]}}]}, "reference[1]"),
        ({"execution": {"cpus_per_trial": 0}}, "execution.cpus_per_trial"),
        ({"execution": {"heartbeat_max_failures": 0}}, "execution.heartbeat_max_failures"),
        ({"execution": {"heartbeat_max_failures": "often"}}, "execution.heartbeat_max_failures"),
        ({"train": {"seed": 1}}, "train"),
    ],
)
def test_bad_study_names_file_and_key(tmp_path: Path, changes: dict, needle: str) -> None:
    p = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as exc:
        load_study_config(p)
    assert needle in str(exc.value) and "study.yaml" in str(exc.value), str(exc.value)


def test_identity_ignores_budget_storage_and_execution(tmp_path: Path) -> None:
    a = load_study_config(_write(tmp_path))
    b = a.with_overrides(trials=99, storage="sqlite:////tmp/x.db", address="127.0.0.1:1")
    assert a.config_hash() == b.config_hash()
    c = load_study_config(_write(tmp_path, sampler={"name": "random", "seed": 0}))
    assert c.config_hash() != a.config_hash()
    assert smoke_config(a).name == "quickstart-smoke" and smoke_config(a).budget.trials == 2


def test_storage_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROWSEARCH_STORAGE", raising=False)
    assert storage_url_from(None, None, "d") == "d"
    assert storage_url_from(None, "c", "d") == "c"
    monkeypatch.setenv("GROWSEARCH_STORAGE", "e")
    assert storage_url_from(None, "c", "d") == "e"
    assert storage_url_from("f", "c", "d") == "f"


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("20m") == 1200 and parse_duration("1.5h") == 5400
    assert parse_duration(7) == 7.0
    with pytest.raises(ValueError):
        parse_duration("tomorrow")


def test_other_config_under_same_name_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    a = load_study_config(_write(tmp_path))
    study = open_study(a, url)
    assert STUDY_CONFIG_HASH.get(study) == a.config_hash()
    assert STUDY_OBJECTIVES.get(study) == [o.model_dump() for o in a.objectives] and study_objectives(study) == list(a.objectives)
    assert study.metric_names == a.objective_names
    assert STUDY_CONFIG.get(study) == a.raw and VERSIONS.get(study)
    open_study(a, url)  # same config: fine
    b = load_study_config(_write(tmp_path, sampler={"name": "random", "seed": 3}))
    with pytest.raises(ConfigError, match="another config .*--study-name"):
        open_study(b, url)
    open_study(b.with_overrides(name="quickstart-2"), url)


def test_recorded_config_has_no_password(tmp_path: Path) -> None:
    cfg = load_study_config(_write(tmp_path, storage="postgresql://u:s3cret@127.0.0.1/db"))
    assert cfg.storage == "postgresql://u:s3cret@127.0.0.1/db"
    assert "s3cret" not in str(cfg.raw) and cfg.raw["storage"] == "postgresql://u:***@127.0.0.1/db"
