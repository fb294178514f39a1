"""The training run's eval min t-DCF when the corpus ships ASV scores (ASVspoof 2019 LA).

The loop read the ASV scores as a dict (``a["target"]``) while ``read_asv_scores`` returns
a named tuple, so every run on a corpus with ASV scores died with a TypeError after
training; mypy found it once it ran in CI.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from growsearch.metrics.scores import read_asv_scores
from growsearch.metrics.tdcf import min_tdcf
from growsearch.train.bookkeeping import _min_tdcf
from growsearch.train.evaluate import Scored

ASV = ("LA_0001 target 5\nLA_0001 target 6\nLA_0002 target 7\nLA_0002 target 3\n"
       "LA_0003 nontarget 0\nLA_0003 nontarget 1\nLA_0004 nontarget 2\nLA_0004 nontarget 4\n"
       "LA_0001 spoof 3\nLA_0002 spoof 5\nLA_0003 spoof 1\n")


def _scored() -> Scored:
    scores = np.array([3.0, 4.0, 5.0, 1.0, 2.0, 3.5, 6.0])
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    return Scored(scores=scores, labels=labels, utts=[f"u{i}" for i in range(7)], attacks=["-"] * 3 + ["A01"] * 4)


def test_min_tdcf_with_asv_scores(tmp_path: Path) -> None:
    path = tmp_path / "asv.txt"
    path.write_text(ASV)
    splits = SimpleNamespace(asv={"eval": SimpleNamespace(scores=path)})
    logged: list[str] = []
    got = _min_tdcf(splits, _scored(), logged.append)
    a = read_asv_scores(path)
    want = min_tdcf([3, 4, 5], [1, 2, 3.5, 6], asv_tar=a.target, asv_non=a.nontarget, asv_spoof=a.spoof)
    assert got == pytest.approx(float(want)) and logged == []


def test_min_tdcf_without_asv_scores_is_none() -> None:
    assert _min_tdcf(SimpleNamespace(asv={}), _scored(), print) is None
    assert _min_tdcf(SimpleNamespace(), _scored(), print) is None
