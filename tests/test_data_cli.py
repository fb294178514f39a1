"""`growsearch data synth` and `growsearch data check` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from growsearch.data import synthetic


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "growsearch", "data", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def synth_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("cli") / "corpus"
    return out, run("synth", "--out", str(out), "--seed", "3", "--size", "tiny")


def test_synth_writes_the_corpus(synth_out: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, res = synth_out
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # data on stdout
    assert doc["generated"] is True and doc["counts"]["train"] == {"bonafide": 10, "spoof": 14}
    assert "generating the synthetic corpus" in res.stderr  # progress on stderr
    assert (out / synthetic.MARKER).is_file()
    again = run("synth", "--out", str(out), "--seed", "3", "--size", "tiny")
    assert again.returncode == 0 and json.loads(again.stdout)["generated"] is False


def test_synth_help_says_it_is_synthetic() -> None:
    res = run("synth", "--help")
    assert res.returncode == 0
    assert "results on it are not deepfake-detection results" in " ".join(res.stdout.split())


def test_synth_bad_out_path(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    res = run("synth", "--out", str(tmp_path / "file.txt" / "sub"))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().startswith("growsearch: error: --out ") and "Traceback" not in res.stderr
    res = run("synth", "--out", str(tmp_path / "file.txt"))
    assert res.returncode == 2 and "exists and is not a folder" in res.stderr


def test_synth_other_seed_into_existing_corpus(synth_out: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = synth_out
    res = run("synth", "--out", str(out), "--seed", "4", "--size", "tiny")
    assert res.returncode == 2 and "holds the synthetic corpus of seed 3" in res.stderr


def test_check_folder_and_yaml(synth_out: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    out, _ = synth_out
    res = run("check", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["dataset"] == "synthetic" and doc["splits"]["eval"]["total"] == 12
    assert set(doc["splits"]["eval"]["attacks"]) == {"bonafide", *synthetic.EVAL_SYSTEMS}
    cfg = tmp_path / "study.yaml"
    cfg.write_text(f"data:\n  dataset: asvspoof2019_la\n  root: {out}\n  max_per_class: {{train: 3}}\n")
    res = run("check", str(cfg), "--read-all")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["splits"]["train"]["total"] == 6 and doc["unreadable"] == []


def test_check_bad_corpus_is_one_line(synth_out: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    out, _ = synth_out
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"dataset: asvspoof2019_la\nroot: {tmp_path / 'nowhere'}\n")
    res = run("check", str(bad))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "nowhere" in res.stderr
    res = run("check", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "not found" in res.stderr
    res = run("check", str(tmp_path), "--dataset", "fakeorreal")
    assert res.returncode == 2 and "for-norm/ not found" in res.stderr
