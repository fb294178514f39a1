"""YAML that users write: duplicate keys, absurd nesting, misspelled keys and swapped kinds
each give one line naming the file, the line and the key (exit 2, no traceback)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from growsearch.errors import ConfigError, ScheduleError
from growsearch.schedule import load_schedules
from growsearch.search.space import load_space
from growsearch.search.study import load_study_config
from growsearch.train.config import load_train_config
from growsearch.yamlio import MAX_DEPTH, load_yaml

ROOT = Path(__file__).resolve().parents[1]


def _study_text(tmp_path: Path) -> str:
    """The quickstart study with absolute paths, as text (line numbers stay those of the file)."""
    text = (ROOT / "studies" / "quickstart.yaml").read_text()
    text = text.replace("../configs/", f"{ROOT}/configs/").replace("../search_spaces/", f"{ROOT}/search_spaces/")
    return text + f"outputs: {tmp_path / 'out'}\n"


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(prefix))


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "growsearch", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("kind", ["study", "config", "space", "schedule"])
def test_duplicate_key_is_refused_naming_file_line_and_key(tmp_path: Path, kind: str) -> None:
    if kind == "study":
        text = _study_text(tmp_path) + "epochs: 3\n"
        p = tmp_path / "s.yaml"
        load = load_study_config
    elif kind == "config":
        text = (ROOT / "configs" / "quickstart.yaml").read_text() + "seed: 7\n"
        p = tmp_path / "c.yaml"
        load = load_train_config
    elif kind == "space":
        text = (ROOT / "search_spaces" / "quickstart.yaml").read_text() + "backbone: lcgrnn\n"
        p = tmp_path / "sp.yaml"
        load = load_space
    else:
        text = "version: 1\nevents:\n  - {point: gru1, epoch: 1, action: grow, neurons: 2, epoch: 3}\n"
        p = tmp_path / "sch.yaml"
        load = load_schedules
    p.write_text(text)
    dup = {"study": "epochs", "config": "seed", "space": "backbone", "schedule": "epoch"}[kind]
    last = len(text.splitlines()) if kind != "schedule" else 3
    with pytest.raises((ConfigError, ScheduleError)) as ei:
        load(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{last}: duplicate key '{dup}'"), msg
    assert "\n" not in msg


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert load_yaml(p) == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}


@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block"])
def test_deep_nesting_is_one_line(tmp_path: Path, style: str) -> None:
    n = 20_000
    p = tmp_path / "deep.yaml"
    if style == "flow-list":
        p.write_text("[" * n + "]" * n + "\n")
    elif style == "flow-map":
        p.write_text("{a: " * n + "1" + "}" * n + "\n")
    else:  # block style needs n*(n+1)/2 spaces; 2*MAX_DEPTH levels show the same limit
        p.write_text("".join(" " * i + "a:\n" for i in range(2 * MAX_DEPTH)) + " " * (2 * MAX_DEPTH) + "1\n")
    with pytest.raises(ConfigError, match=rf"^{p}:\d+: nested more than {MAX_DEPTH} levels deep$"):
        load_yaml(p)


@pytest.mark.parametrize("command", ["run", "schedule"])
def test_deep_nesting_cli_exit_2(tmp_path: Path, command: str) -> None:
    n = 20_000
    p = tmp_path / "deep.yaml"
    p.write_text("{a: " * n + "1" + "}" * n + "\n")
    args = ["run", str(p)] if command == "run" else ["train", str(ROOT / "configs" / "quickstart.yaml"), "--schedule", str(p)]
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"growsearch: error: {p}:1: nested more than {MAX_DEPTH} levels deep"]


def test_misspelled_study_key_suggests_and_names_the_line(tmp_path: Path) -> None:
    text = _study_text(tmp_path).replace("\nobjectives:", "\nobjectivs:")
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_study_config(p)
    assert str(ei.value) == f"{p}:{_line_of(text, 'objectivs:')}: objectivs: unknown key; did you mean 'objectives'?"


def test_misspelled_nested_key_in_training_config(tmp_path: Path) -> None:
    text = "seed: 1\ndata: {dataset: synthetic}\nmodel: {backbone: lcgrnn, preset: tiny}\ntraining:\n  epochs: 2\n  bach_size: 4\n"
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_train_config(p)
    assert str(ei.value) == f"{p}:6: training.bach_size: unknown key; did you mean 'batch_size'?"


def test_bad_value_names_its_line(tmp_path: Path) -> None:
    text = re.sub(r"^sampler: \{name: \w+,", "sampler: {name: cmaes,", _study_text(tmp_path), flags=re.M)
    assert "name: cmaes" in text
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_study_config(p)
    assert str(ei.value).startswith(f"{p}:{_line_of(text, 'sampler:')}: sampler.name: ")


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    p = tmp_path / "sch.yaml"
    p.write_text("version: 1\nevents: []\nzzz: 1\n")
    with pytest.raises(ScheduleError) as ei:
        load_schedules(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:3: zzz: unknown key; valid keys: ") and "events" in msg


@pytest.mark.parametrize(("command", "file", "says"), [
    ("run", "configs/quickstart.yaml", "this file is a training config, not a study"),
    ("show", "configs/quickstart.yaml", "this file is a training config, not a study"),
    ("train", "studies/quickstart.yaml", "this file is a study, not a training config"),
])
def test_swapped_kinds_say_what_the_file_is(command: str, file: str, says: str) -> None:
    r = _cli(command, file)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"growsearch: error: {file}: {says}"), r.stderr


def test_study_as_schedule_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="this file is a study, not a growth schedule"):
        load_schedules(ROOT / "studies" / "quickstart.yaml")


def test_loaded_yaml_dumps_and_pickles_as_plain_data(tmp_path: Path) -> None:
    import pickle

    p = tmp_path / "x.yaml"
    p.write_text("a: {b: [1, {c: 2}]}\n")
    d = load_yaml(p)
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    back = pickle.loads(pickle.dumps(d))
    assert back == d and type(back) is dict and type(back["a"]["b"]) is list and type(back["a"]["b"][1]) is dict
