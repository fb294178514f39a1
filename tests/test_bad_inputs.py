"""Malformed numbers through the real CLI: every one is one line naming the file and key,
exit 2, no traceback, nothing trained (seeds, widths, clip lengths, resources, folders)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from growsearch.errors import ConfigError
from growsearch.search.resources import check_trial_fits

from cli_run import run_cli

ROOT = Path(__file__).resolve().parents[1]
TRAIN = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
SPACE = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
BIG = [{"point": "gru2", "epoch": 1, "neurons": 1000000}]


def _set(d: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    cur = d
    parts = key.split(".")
    for k in parts[:-1]:
        cur = cur.setdefault(k, {})
    cur[parts[-1]] = value
    return d



def _one_line(rc: int, out: str, err: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("growsearch: error: "), err
    return lines[0]


TRAIN_CASES = [
    # (key in configs/quickstart.yaml, value, words the message must hold)
    ("seed", -1, ["seed", "greater than or equal to 0"]),
    ("seed", 2**32, ["seed", "4294967295"]),
    ("data.subset_seed", -5, ["data.subset_seed"]),
    ("data.synth_seed", 2**40, ["data.synth_seed"]),
    ("model.options.hidden", "abc", ["model", "hidden"]),
    ("model.options.hidden", [1000000, 3, 2, 2], ["model", "parameters", "GB", "max_params"]),
    ("model.options.hidden", [1e9, 3, 2, 2], ["options.hidden[0]"]),
    ("model.options.hidden", [1e26, 3, 2, 2], ["options.hidden[0]"]),
    ("data.clip_samples", 1e9, ["data.clip_samples"]),
    ("data.clip_samples", 1e26, ["data.clip_samples"]),
    ("training.lr", float("nan"), ["training.lr", "finite"]),
    ("training.epochs", 10**9, ["training.epochs"]),
    ("training.batch_size", 10**12, ["training.batch_size"]),
    ("schedule", {"events": BIG}, ["schedule", "parameters"]),
    ("schedule", {"events": [{"point": "gru2", "epoch": 1, "neurons": 1e9}]}, ["neurons"]),
    ("schedule", {"events": [{"point": "gru2", "epoch": 1, "neurons": 1e26}]}, ["neurons"]),
]


@pytest.mark.parametrize(("key", "value", "words"), TRAIN_CASES, ids=[f"{k}={v!r}"[:40] for k, v, _ in TRAIN_CASES])
def test_bad_training_config(key: str, value: Any, words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(_set(TRAIN, key, value)))
    line = _one_line(*run_cli(["train", str(p), "--out", str(tmp_path / "o")], capsys))
    assert str(p) in line
    for w in words:
        assert w in line, line
    assert not (tmp_path / "o").exists()


def test_model_size_limit_is_configurable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(_set(TRAIN, "model.max_params", 100)))
    assert "over the limit of 100" in _one_line(*run_cli(["train", str(p), "--out", str(tmp_path / "o")], capsys))
    monkeypatch.setenv("GROWSEARCH_MAX_PARAMS", "200")
    p.write_text(yaml.safe_dump(TRAIN))
    assert "over the limit of 200" in _one_line(*run_cli(["train", str(p), "--out", str(tmp_path / "o")], capsys))


def test_max_params_is_not_part_of_the_config_identity() -> None:
    from growsearch.train.config import TrainConfig

    a = TrainConfig.model_validate(TRAIN)
    b = TrainConfig.model_validate(_set(TRAIN, "model.max_params", 10**8))
    assert a.model_dump(mode="json") == b.model_dump(mode="json")


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--seed", str(2**32)]])
def test_bad_seed_flag(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(*run_cli(["train", str(ROOT / "configs" / "quickstart.yaml"), "--out", str(tmp_path / "o"), *argv], capsys))
    assert "--seed" in line and "4294967295" in line


@pytest.mark.parametrize("seed", [-3, 2**32, "7"])
def test_bad_export_item_seed(seed: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "best.yaml"
    f.write_text(yaml.safe_dump({"growsearch_export": 1, "schedules": [{"trial": 3, "seed": seed, "schedule": {"events": []}}]}))
    line = _one_line(*run_cli(["train", str(ROOT / "configs" / "quickstart.yaml"), "--schedule", str(f), "--out",
                            str(tmp_path / "o")], capsys))
    assert "schedules[0].seed" in line


def test_a_schedule_file_too_large_to_allocate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "big.yaml"
    f.write_text(yaml.safe_dump({"events": BIG}))
    line = _one_line(*run_cli(["train", str(ROOT / "configs" / "quickstart.yaml"), "--schedule", str(f), "--out",
                            str(tmp_path / "o")], capsys))
    assert str(f) in line and "parameters" in line


def test_bad_synth_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(*run_cli(["data", "synth", "--out", str(tmp_path / "s"), "--seed", "-1"], capsys))
    assert "--seed" in line


def _space(high: Any) -> dict[str, Any]:
    return _set(SPACE, "points.gru2.neurons", {"low": 4, "high": high})


STUDY_CASES = [
    ("sampler", {"name": "nsga2", "seed": -1}, ["sampler.seed"]),
    ("sampler", {"name": "nsga2", "seed": 2**32}, ["sampler.seed"]),
    ("space", _space(1000000), ["space", "parameters"]),
    ("space", _space(1e26), ["neurons.high"]),
    ("execution", {"num_cpus": 2, "cpus_per_trial": 64}, ["cpus_per_trial", "num_cpus"]),
    ("execution", {"num_gpus": 0, "gpus_per_trial": 1}, ["gpus_per_trial"]),
    ("execution", {"shared_dir": "{tmp}/a_file/sub"}, ["execution.shared_dir", "not writable"]),
    ("budget", {"trials": 10**12}, ["budget.trials"]),
    ("budget", {"wall_time": float("inf")}, ["budget.wall_time"]),
    ("reference", ["baseline", {"label": "big", "schedule": {"events": BIG}}], ["reference[1]", "parameters"]),
    ("scheduler", {"name": "mosha"}, ["s.yaml:", "scheduler.name", "unknown scheduler 'mosha'", "did you mean 'moasha'"]),
    ("scheduler", "pgb", ["scheduler.name", "unknown scheduler 'pgb'", "did you mean 'pbg'", "valid schedulers: none, moasha, pbg"]),
    ("scheduler", {"name": "pbg", "population": 99}, ["s.yaml:", "scheduler.population", "larger than the trial budget"]),
    ("scheduler", {"name": "pbg", "boundaries": [1, 99]}, ["s.yaml:", "scheduler.boundaries", "boundary 99",
                                                           "not before the study's end"]),
    ("scheduler", {"name": "pbg", "boundaries": [1], "interval": 2}, ["scheduler", "boundaries or interval"]),
    ("scheduler", {"name": "pbg", "quantile": 0.9}, ["scheduler.quantile"]),
    ("scheduler", {"name": "pbg", "interval": 99}, ["scheduler.interval", "no boundary fits"]),
    ("scheduler", {"name": "pbg", "populaton": 4}, ["scheduler.populaton", "did you mean 'population'"]),
    ("scheduler", {"name": "moasha", "rung": [1]}, ["s.yaml:", "scheduler.rung", "unknown key", "did you mean 'rungs'"]),
    ("scheduler", {"name": "moasha", "rungs": [1, 99]}, ["s.yaml:", "scheduler.rungs", "rung 99", "not before the study's end"]),
    ("scheduler", {"name": "moasha", "rungs": [2, 1]}, ["scheduler.rungs", "strictly increasing"]),
    ("scheduler", {"name": "moasha", "grace": 99}, ["scheduler.grace", "no rung fits"]),
    ("scheduler", {"name": "moasha", "reduction_factor": 0.5}, ["scheduler.reduction_factor", "greater than 1"]),
    ("scheduler", {"name": "moasha", "min_epochs_after_growth": -1}, ["scheduler.min_epochs_after_growth"]),
    ("budget", {"train_flops": -1}, ["budget.train_flops"]),
]


@pytest.mark.parametrize(("key", "value", "words"), STUDY_CASES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(STUDY_CASES)])
def test_bad_study(key: str, value: Any, words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROWSEARCH_STORAGE", raising=False)
    (tmp_path / "a_file").write_text("x")
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(train=str(ROOT / "configs" / "quickstart.yaml"), space=str(ROOT / "search_spaces" / "quickstart.yaml"),
                outputs=str(tmp_path / "out"))
    data[key] = yaml.safe_load(yaml.safe_dump(value).replace("{tmp}", str(tmp_path)))
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    rc, out, err = run_cli(["run", str(p)], capsys)
    err = "\n".join(x for x in err.splitlines() if not x.startswith("[growsearch] study "))  # the storage line may come first
    line = _one_line(rc, out, err)
    for w in words:
        assert w in line, line


def test_moasha_without_dev_eer_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROWSEARCH_STORAGE", raising=False)
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(train=str(ROOT / "configs" / "quickstart.yaml"), space=str(ROOT / "search_spaces" / "quickstart.yaml"),
                outputs=str(tmp_path / "out"), objectives=["params", "flops"], scheduler={"name": "moasha"})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    rc, out, err = run_cli(["run", str(p)], capsys)
    line = _one_line(rc, out, err)
    assert "s.yaml:" in line and "scheduler: moasha judges trials by dev_eer" in line


def test_trial_larger_than_every_node_is_refused() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0}}]
    check_trial_fits(4, 1, nodes)
    check_trial_fits(2, 0, nodes)
    for cpu, gpu in ((8, 0), (2, 2), (64, 0)):  # 8 CPUs exist in total, but not on one node; the big node is dead
        with pytest.raises(ConfigError) as info:
            check_trial_fits(cpu, gpu, nodes)
        assert "largest has 4 CPU(s), 1 GPU(s)" in str(info.value)


@pytest.mark.slow
def test_cpus_per_trial_larger_than_the_cluster_is_refused_not_a_hang(tmp_path: Path) -> None:
    """A local Ray of all this machine's CPUs and a trial asking for more: before, trials
    showed as running and none was ever scheduled; now exit 2 with one line, nothing RUNNING."""
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(train=str(ROOT / "configs" / "quickstart.yaml"), space=str(ROOT / "search_spaces" / "quickstart.yaml"),
                outputs=str(tmp_path / "out"), execution={"cpus_per_trial": (os.cpu_count() or 1) + 1, "max_concurrent": 1})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "growsearch", "run", str(p)], check=False, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env={**os.environ, "GROWSEARCH_STORAGE": "", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("growsearch: error: execution: one trial asks for") and "Traceback" not in proc.stderr
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{tmp_path}/out/study.db")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
