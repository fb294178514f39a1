"""Score files and ``growsearch score`` on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from growsearch.errors import DataError
from growsearch.metrics.eer import eer
from growsearch.metrics.scores import (
    ScoreRow,
    make_rows,
    read_asv_scores,
    read_scores,
    score_summary,
    write_scores,
)
from growsearch.metrics.tdcf import min_tdcf, min_tdcf_from_constants

from cli_run import run_cli

# bona fide [3, 4, 5] vs spoof [1, 2, 3.5, 6] -> EER 7/24 (DATA.md); A01 = {1, 6}, A02 = {2, 3.5}
ROWS = [
    ScoreRow("LA_D_0001", "-", "bonafide", 3.0),
    ScoreRow("LA_D_0002", "-", "bonafide", 4.0),
    ScoreRow("LA_D_0003", "-", "bonafide", 5.0),
    ScoreRow("LA_D_0004", "A01", "spoof", 1.0),
    ScoreRow("LA_D_0005", "A02", "spoof", 2.0),
    ScoreRow("LA_D_0006", "A02", "spoof", 3.5),
    ScoreRow("LA_D_0007", "A01", "spoof", 6.0),
]
ASV_TEXT = "LA_0001 target 5\nLA_0001 target 6\nLA_0002 target 7\nLA_0002 target 3\n" \
           "LA_0003 nontarget 0\nLA_0003 nontarget 1\nLA_0004 nontarget 2\nLA_0004 nontarget 4\n" \
           "LA_0001 spoof 3\nLA_0002 spoof 5\nLA_0003 spoof 1\n"



@pytest.fixture
def scorefile(tmp_path: Path) -> Path:
    return write_scores(tmp_path / "scores" / "dev.txt", ROWS)


def test_write_read_round_trip(scorefile: Path) -> None:
    assert scorefile.read_text().splitlines()[3] == "LA_D_0004 A01 spoof 1.0"
    assert read_scores(scorefile) == ROWS
    assert [p.name for p in scorefile.parent.iterdir()] == ["dev.txt"]
    rows = make_rows(["a", "b", "c"], ["A05", "A05", "A06"], torch.tensor([1, 0, 0]), torch.tensor([0.1, 1 / 3, -2.0]))
    assert rows[0] == ScoreRow("a", "-", "bonafide", pytest.approx(0.1))
    write_scores(scorefile, rows)
    assert [r.score for r in read_scores(scorefile)] == [r.score for r in rows]  # repr: exact round trip
    # column-wise form (scores as an array)
    write_scores(scorefile, ["a", "b"], ["-", "A01"], ["bonafide", "spoof"], np.array([0.5, -1.25]))
    assert read_scores(scorefile) == [ScoreRow("a", "-", "bonafide", 0.5), ScoreRow("b", "A01", "spoof", -1.25)]
    with pytest.raises(DataError, match="equal length"):
        write_scores(scorefile, ["a"], ["-"], ["bonafide", "spoof"], [0.5])


def test_summary(scorefile: Path) -> None:
    s = score_summary(read_scores(scorefile))
    assert s["eer"] == pytest.approx(7 / 24)
    assert (s["n_bonafide"], s["n_spoof"]) == (3, 4)
    assert s["per_attack_eer"] == {"A01": eer([3, 4, 5], [1, 6]), "A02": eer([3, 4, 5], [2, 3.5])}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("u1 - bonafide 1.0\nu2 A01 spoof\n", r"bad\.txt:2: expected 4 columns"),
        ("u1 - bonafide 1.0\n\nu2 A01 fake 0.5\n", r"bad\.txt:3: key must be one of bonafide, spoof \(got 'fake'\)"),
        ("u1 - bonafide high\n", r"bad\.txt:1: score is not a number \(got 'high'\)"),
        ("u1 - bonafide nan\n", r"bad\.txt:1: score is 'nan'"),
        ("u1 - bonafide 1\nu1 A01 spoof 0\n", r"bad\.txt:2: utterance 'u1' is scored twice \(first on line 1\)"),
        ("\n\n", r"bad\.txt: score file is empty"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=needle):
        read_scores(p)


def test_write_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="key must be one of bonafide, spoof"):
        write_scores(tmp_path / "x.txt", [("u", "-", "real", 1.0)])
    with pytest.raises(DataError, match="NaN/Inf"):
        write_scores(tmp_path / "x.txt", [("u", "-", "bonafide", float("inf"))])
    with pytest.raises(DataError, match="one non-empty word"):
        write_scores(tmp_path / "x.txt", [("u 1", "-", "bonafide", 1.0)])
    assert not (tmp_path / "x.txt").exists()


def test_cli_text_and_json(scorefile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["score", str(scorefile)], capsys)
    assert code == 0 and err == ""
    assert out.startswith("EER       29.1667 %") and "A01" in out
    code, out, _ = run_cli(["score", str(scorefile), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["eer"] == pytest.approx(7 / 24) and data["n_spoof"] == 4
    assert "min_tdcf" not in data


def test_cli_tdcf_with_asv_scores_and_constants(scorefile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asv = tmp_path / "asv.txt"
    asv.write_text(ASV_TEXT)
    a = read_asv_scores(asv)
    tar, non, spf = a
    assert tar.tolist() == [5, 6, 7, 3] and non.tolist() == [0, 1, 2, 4] and spf.tolist() == [3, 5, 1]
    for form in ("legacy", "revised"):
        code, out, _ = run_cli(["score", str(scorefile), "--json", "--asv-scores", str(asv), "--tdcf-form", form], capsys)
        assert code == 0
        want = min_tdcf([3, 4, 5], [1, 2, 3.5, 6], asv_tar=a.target, asv_non=a.nontarget, asv_spoof=a.spoof, form=form)
        assert json.loads(out)["min_tdcf"] == pytest.approx(want)
    code, out, _ = run_cli(["score", str(scorefile), "--json", "--tdcf-constants", "legacy-la"], capsys)
    assert code == 0
    assert json.loads(out)["min_tdcf"] == pytest.approx(min_tdcf_from_constants([3, 4, 5], [1, 2, 3.5, 6], 0, 2.40595, 1))
    code, out, _ = run_cli(["score", str(scorefile), "--tdcf-constants", "revised-la"], capsys)
    assert code == 0 and "min t-DCF" in out


@pytest.mark.parametrize(
    ("setup", "args", "needle"),
    [
        (None, ["missing.txt"], "missing.txt: score file not found"),
        ("u1 - bonafide 1\nu2 A01 spoof x\n", ["f.txt"], "f.txt:2: score is not a number"),
        ("u1 - bonafide 1\nu2 - bonafide 2\n", ["f.txt"], "no spoof rows"),
        ("u1 - bonafide 1\nu2 A01 spoof 0\n", ["f.txt", "--tdcf-constants", "legacy-xx"], "valid: legacy-la, revised-la"),
        ("u1 - bonafide 1\nu2 A01 spoof 0\n", ["f.txt", "--tdcf-constants", "legacy-la"], "only 2 unique"),
        ("u1 - bonafide 1\nu2 A01 spoof 0\nu3 A01 spoof 0.5\n", ["f.txt", "--asv-scores", "asv.txt"],
         "asv.txt:1: key must be one of target, nontarget, spoof"),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       setup: str | None, args: list[str], needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / "f.txt").write_text(setup)
    (tmp_path / "asv.txt").write_text("LA_0001 genuine 1.0\n")
    code, out, err = run_cli(["score", *args], capsys)
    assert code == 2 and out == ""
    assert err.startswith("growsearch: error: ") and needle in err and err.count("\n") == 1


def test_cli_subprocess(scorefile: Path, tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "growsearch", "score", str(scorefile), "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["eer"] == pytest.approx(7 / 24)
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 - bonafide 1 extra\n")
    r = subprocess.run([sys.executable, "-m", "growsearch", "score", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "" and "bad.txt:1: expected 4 columns" in r.stderr and "Traceback" not in r.stderr


def test_all_equal_scores_say_why_the_eer_is_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "flat.txt"
    f.write_text("u1 - bonafide 0.5\nu2 A01 spoof 0.5\nu3 A02 spoof 0.5\n")
    code, out, _ = run_cli(["score", str(f)], capsys)
    assert code == 0 and "EER       100.0000 %" in out
    assert "note      all 3 scores are equal (0.5)" in out and "official scorer's convention" in out
    code, out, _ = run_cli(["score", str(f), "--json"], capsys)
    doc = json.loads(out)
    assert doc["eer"] == 1.0 and doc["note"].startswith("all 3 scores are equal")
    ok = tmp_path / "ok.txt"
    ok.write_text("u1 - bonafide 1\nu2 A01 spoof 0\n")
    code, out, _ = run_cli(["score", str(ok), "--json"], capsys)
    assert "note" not in json.loads(out)


def test_tdcf_refusal_for_too_few_distinct_scores_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "binary.txt"
    f.write_text("u1 - bonafide 1\nu2 A01 spoof 0\nu3 A01 spoof 0\n")
    code, out, err = run_cli(["score", str(f), "--tdcf-constants", "legacy-la"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"growsearch: error: {f}: CM scores have only 2 unique value(s)")
    asv = tmp_path / "asv.txt"
    asv.write_text(ASV_TEXT)
    code, out, err = run_cli(["score", str(f), "--asv-scores", str(asv)], capsys)
    assert code == 2 and err.startswith(f"growsearch: error: {f}: CM scores have only 2 unique")


def test_cli_tdcf_undefined_when_asv_accepts_no_spoofs(scorefile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ASV system that rejects every spoof makes the legacy t-DCF 0/0 (the official scorer
    returns NaN): the EER is still reported, the t-DCF is undefined with the reason, exit 0."""
    asv = tmp_path / "asv_nospoof.txt"
    asv.write_text(ASV_TEXT.replace("spoof 3\n", "spoof -10\n").replace("spoof 5\n", "spoof -9\n").replace("spoof 1\n", "spoof -8\n"))
    code, out, err = run_cli(["score", str(scorefile), "--asv-scores", str(asv)], capsys)
    assert code == 0 and err == ""
    assert out.startswith("EER       29.1667 %")
    assert "min t-DCF undefined" in out and "accepts no spoofed trials" in out and "NaN" in out
    code, out, err = run_cli(["score", str(scorefile), "--asv-scores", str(asv), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["eer"] == pytest.approx(7 / 24)
    assert data["min_tdcf"] is None and "Pfa_spoof = 0" in data["tdcf"]["undefined"]
    # the revised form stays defined (its C0 > 0), so it is a number
    code, out, _ = run_cli(["score", str(scorefile), "--asv-scores", str(asv), "--json", "--tdcf-form", "revised"], capsys)
    assert code == 0 and isinstance(json.loads(out)["min_tdcf"], float)
