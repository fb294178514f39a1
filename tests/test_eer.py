"""EER exactly as the official ASVspoof scorer computes it (shared/docs/DATA.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from growsearch.errors import DataError, GrowsearchError
from growsearch.metrics.eer import ScoreError, det_curve, eer, eer_threshold

DATA_MD_VECTORS = [
    ([1, 2, 3], [0, -1, -2], 0.0),
    ([0.9, 0.8, 0.7, 0.2], [0.1, 0.3, 0.4, 0.6], 0.25),
    ([3, 4, 5], [1, 2, 3.5, 6], 7 / 24),
    ([1, 2, 3, 4, 5], [0, 2.5], 0.45),
    ([0.5, 0.5], [0.5, 0.5], 1.0),
]


@pytest.mark.parametrize(("bona", "spoof", "expected"), DATA_MD_VECTORS)
def test_data_md_vectors(bona: list[float], spoof: list[float], expected: float) -> None:
    assert eer(bona, spoof) == pytest.approx(expected, rel=1e-15, abs=0)


def test_accepts_numpy_and_torch() -> None:
    b, s = [3, 4, 5], [1, 2, 3.5, 6]
    assert eer(np.array(b), np.array(s)) == eer(torch.tensor(b, dtype=torch.float32), torch.tensor(s)) == eer(b, s)


def test_threshold_is_official() -> None:
    # [3,4,5] vs [1,2,3.5,6]: sorted 1 2 3 3.5 4 5 6; the EER is at k=4 -> threshold = 4th score.
    e, thr = eer_threshold([3, 4, 5], [1, 2, 3.5, 6])
    assert thr == 3.5
    frr, far, thresholds = det_curve([3, 4, 5], [1, 2, 3.5, 6])
    assert frr[0] == 0.0 and far[0] == 1.0 and frr[-1] == 1.0 and far[-1] == 0.0
    assert thresholds[0] == pytest.approx(1 - 0.001)
    assert len(frr) == len(far) == len(thresholds) == 8


def test_sign_error_gives_one() -> None:
    assert eer([-1, -2, -3], [0, 1, 2]) == 1.0


@pytest.mark.parametrize(
    ("bona", "spoof", "needle"),
    [
        ([], [1.0], "bona fide scores are empty"),
        ([1.0], [], "spoof scores are empty"),
        ([1.0, math.nan], [0.0], "NaN/Inf"),
        ([1.0], [0.0, math.inf], "NaN/Inf"),
        (["a"], [0.0], "not numbers"),
    ],
)
def test_refuses_bad_scores(bona: list, spoof: list, needle: str) -> None:
    with pytest.raises(ScoreError, match=needle) as ei:
        eer(bona, spoof)
    assert isinstance(ei.value, DataError) and isinstance(ei.value, GrowsearchError)
    assert "\n" not in str(ei.value)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=64)
score_lists = st.lists(finite, min_size=1, max_size=40)
# Scores on a coarse grid so that ties are frequent.
grid_lists = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(score_lists, score_lists)
def test_eer_in_unit_interval(b: list[float], s: list[float]) -> None:
    assert 0.0 <= eer(b, s) <= 1.0


@settings(max_examples=150, deadline=None)
@given(grid_lists, grid_lists, st.sampled_from(["exp", "cube", "affine", "atan"]))
def test_invariant_under_increasing_transform(b: list[float], s: list[float], kind: str) -> None:
    f = {
        "exp": lambda x: np.exp(np.asarray(x) / 2),
        "cube": lambda x: np.asarray(x) ** 3,
        "affine": lambda x: 3.0 * np.asarray(x) - 7.0,
        "atan": lambda x: np.arctan(np.asarray(x)),
    }[kind]
    assert eer(f(b), f(s)) == eer(b, s)


@settings(max_examples=150, deadline=None)
@given(grid_lists, grid_lists)
def test_swapping_classes_and_negating(b: list[float], s: list[float]) -> None:
    e = eer(b, s)
    e2 = eer([-x for x in s], [-x for x in b])  # the same detector seen from the other class
    assert 0.0 <= e2 <= 1.0
    flipped = eer([-x for x in b], [-x for x in s])  # a sign error
    assert 0.0 <= flipped <= 1.0
    if len(set(b) | set(s)) == len(b) + len(s):
        # Without ties both views share one DET curve; only the "first minimiser" rule and
        # the curve's step size separate them. A sign error maps e to about 1 - e.
        step = 1.0 / min(len(b), len(s))
        assert abs(e2 - e) <= step + 1e-12
        assert flipped >= 1.0 - e - step - 1e-12


@settings(max_examples=100, deadline=None)
@given(score_lists, st.lists(finite, min_size=1, max_size=40))
def test_perfect_separation_is_zero(b: list[float], s: list[float]) -> None:
    lo = max(s)
    b = [lo + 1.0 + abs(x) for x in b]
    assert eer(b, s) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 20), st.integers(1, 20), finite)
def test_all_tied_is_one(nb: int, ns: int, v: float) -> None:
    assert eer([v] * nb, [v] * ns) == 1.0


def _naive_eer(b: list[float], s: list[float]) -> float:
    """The official rule spelled out with loops: stable order (bona fide first on ties)."""
    pairs = sorted([(x, 0) for x in b] + [(x, 1) for x in s])  # ties: bona fide (0) first
    best = None
    for k in range(len(pairs) + 1):
        frr = sum(1 for _, c in pairs[:k] if c == 0) / len(b)
        far = sum(1 for _, c in pairs[k:] if c == 1) / len(s)
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    assert best is not None
    return best[1]


@settings(max_examples=200, deadline=None)
@given(grid_lists, grid_lists)
def test_matches_naive_reference(b: list[float], s: list[float]) -> None:
    assert eer(b, s) == pytest.approx(_naive_eer(b, s), abs=1e-12)


def test_two_gaussians_match_the_analytic_eer() -> None:
    # N(2, 1) vs N(0, 1): the EER threshold is 1, so EER = Phi(-1) = 0.158655...
    rng = np.random.default_rng(0)
    e = eer(rng.normal(2.0, 1.0, 20_000), rng.normal(0.0, 1.0, 20_000))
    assert e == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)), abs=0.006)
