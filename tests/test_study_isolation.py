"""Study names and trial folders: a name from any source never leaves its folder, and two
studies sharing an outputs folder never share a trial folder or a checkpoint."""

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

from growsearch.errors import ConfigError
from growsearch.paths import child_path
from growsearch.search.study import validate_study_name
from growsearch.search.trainable import STUDY_FILE, check_study_record, study_identity, study_trials_dir, trial_dir

ROOT = Path(__file__).resolve().parents[1]
GROWSEARCH = str(Path(sys.executable).with_name("growsearch"))
BAD_NAMES = ["../../../../x", "a/b", "..", "/abs", ".hidden", "", "x" * 101, "a..b", "white space", "new\nline", "trailing\n"]


def _cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "growsearch", *argv], check=False, capture_output=True, text=True, timeout=600,
                          cwd=cwd, env={**os.environ, "GROWSEARCH_STORAGE": "", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})


def _one_line_exit_2(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("growsearch: error: "), proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        validate_study_name(name, "--study-name")


@pytest.mark.parametrize("name", ["quickstart", "a-b_c.1", "X9"])
def test_good_names_pass(name: str) -> None:
    assert validate_study_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "/etc", ""])
def test_child_path_never_leaves_root(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        child_path(tmp_path, name)


def test_child_path_through_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError):
        child_path(tmp_path / "root", "link")
    assert child_path(tmp_path / "root", "ok") == tmp_path / "root" / "ok"


@pytest.mark.parametrize("name", ["../../../../x", "a/b", ".."])
def test_study_name_flag_cannot_leave_the_runs_folder(name: str, tmp_path: Path) -> None:
    """``run --study-name ../../../../x`` made Ray write outside the runs folder; now it is
    refused before anything is created."""
    proc = _cli(["run", str(ROOT / "studies" / "quickstart.yaml"), "--study-name", name,
                 "--storage", f"sqlite:///{tmp_path}/s.db"], tmp_path)
    line = _one_line_exit_2(proc)
    assert "--study-name" in line and "invalid study name" in line
    assert list(tmp_path.iterdir()) == []


def test_study_yaml_name_and_report_study_argument_are_checked(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(name="../escape", train=str(ROOT / "configs" / "quickstart.yaml"), space=str(ROOT / "search_spaces" / "quickstart.yaml"))
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    line = _one_line_exit_2(_cli(["run", str(p)], tmp_path))
    assert "name" in line and str(p) in line
    db = tmp_path / "x.db"
    optuna.create_study(study_name="ok", storage=f"sqlite:///{db}")
    for cmd in (["show"], ["pareto"], ["export", "-o", str(tmp_path / "e.yaml")]):
        line = _one_line_exit_2(_cli([*cmd, "../../x", "--storage", str(db)], tmp_path))
        assert "invalid study name" in line


def test_trial_folders_are_keyed_by_study_identity(tmp_path: Path) -> None:
    a = study_trials_dir(tmp_path, f"sqlite:///{tmp_path}/study.db", "quickstart")
    assert a.parent == tmp_path / "trials" and a.name.startswith("quickstart-")
    assert a == study_trials_dir(tmp_path, str(tmp_path / "study.db"), "quickstart")  # same file, other spelling
    assert a != study_trials_dir(tmp_path, f"sqlite:///{tmp_path}/study.db", "quickstart-v2")
    assert a != study_trials_dir(tmp_path, f"sqlite:///{tmp_path}/other.db", "quickstart")
    pg = study_trials_dir(tmp_path, "postgresql://u:pw1@h/db", "q")
    assert pg == study_trials_dir(tmp_path, "postgresql+psycopg://u:pw2@H/db", "q")  # the password is no identity
    assert pg != study_trials_dir(tmp_path, "postgresql://u:pw1@h/other", "q")
    assert trial_dir(a, 3) == a / "00003"


def test_a_folder_recorded_for_another_study_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/study.db"
    mine = study_identity(url, "a", "h1")
    out = tmp_path / "t"
    out.mkdir()
    assert check_study_record(out, mine) is None  # first use records it
    assert json.loads((out / STUDY_FILE).read_text())["key"] == mine["key"]
    assert check_study_record(out, mine) is None  # and accepts it again
    for other in (study_identity(url, "b", "h1"), study_identity(url, "a", "h2")):
        msg = check_study_record(out, other)
        assert msg is not None and "refusing its checkpoint" in msg and "\n" not in msg


@pytest.mark.slow
def test_two_studies_in_one_outputs_folder(tmp_path: Path, corpus: Path) -> None:
    """The issue's scenario through the CLI: a study runs; its config changes; the refusal
    says "pass --study-name NEW"; the new study in the same outputs folder (and the same
    study.db) trains every trial from scratch in its own folders, never on the first
    study's checkpoints."""
    out = tmp_path / "out"

    def study(lr: float) -> Path:
        data = {
            "name": "shared",
            "train": {
                "seed": 1,
                "data": {"dataset": "synthetic", "synth_size": "tiny", "clip_samples": 4000, "root": str(corpus)},
                "model": {"backbone": "lcgrnn", "preset": "tiny"},
                "training": {"epochs": 3, "batch_size": 8, "lr": lr, "device": "cpu", "max_batches_per_epoch": 2, "max_eval_batches": 2},
            },
            "space": str(ROOT / "search_spaces" / "quickstart.yaml"),
            "epochs": 3,
            "objectives": ["dev_eer", "params"],
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": 2},
            "reference": ["baseline"],
            "outputs": str(out),
            "execution": {"num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 2, "retries": 1, "prefix_reuse": False},
        }
        p = tmp_path / "shared.yaml"
        p.write_text(yaml.safe_dump(data))
        return p

    first = _cli(["run", str(study(3.0e-3))], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    refused = _cli(["run", str(study(1.0e-2))], tmp_path)
    assert "--study-name" in _one_line_exit_2(refused)
    second = _cli(["run", str(study(1.0e-2)), "--study-name", "shared-v2"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]

    url = f"sqlite:///{out}/study.db"
    studies = {name: optuna.load_study(study_name=name, storage=url) for name in ("shared", "shared-v2")}
    for name, s in studies.items():
        done = [t for t in s.trials if t.state == TrialState.COMPLETE]
        assert len(done) == 2 and not [t for t in s.trials if t.state != TrialState.COMPLETE], (name, s.trials)
        for t in done:  # trained from scratch: no checkpoint found in its folder
            assert t.user_attrs["attempt"]["resumed_checkpoint"] is False, (name, t.number, t.user_attrs["attempt"])
            assert len(t.user_attrs["curves"]["dev_eer"]) == 3
    dirs = {}
    for name, s in studies.items():
        dirs[name] = study_trials_dir(out, url, name)
        rec = json.loads((trial_dir(dirs[name], 0) / STUDY_FILE).read_text())
        assert rec["study"] == name and rec["config_hash"] == s.user_attrs["config_hash"]
    assert dirs["shared"] != dirs["shared-v2"]


def test_list_quotes_a_storage_name_growsearch_would_refuse(tmp_path: Path) -> None:
    """A study made by another tool under a name growsearch refuses is listed quoted (it can
    neither split the table nor be taken for a path)."""
    db = tmp_path / "x.db"
    optuna.create_study(study_name="fine", storage=f"sqlite:///{db}")
    optuna.create_study(study_name="../odd\nname", storage=f"sqlite:///{db}")
    proc = _cli(["list", "--storage", str(db)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == 3 and rows[1].startswith("fine\t") and rows[2].startswith("'../odd\\nname'\t")
