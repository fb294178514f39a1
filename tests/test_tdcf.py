"""Min t-DCF (legacy and revised) against hand computations on small vectors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growsearch.metrics.eer import ScoreError
from growsearch.metrics.tdcf import (
    TDCF_CONSTANTS,
    asv_error_rates,
    min_tdcf,
    min_tdcf_from_constants,
)

# ASV: targets 3,5,6,7; non-targets 0,1,2,4. Sorted 0n 1n 2n 3t 4n 5t 6t 7t: the EER is
# first reached at k=4 (FRR = FAR = 1/4), threshold = the 4th score = 3.
ASV = {"asv_tar": [5.0, 6.0, 7.0, 3.0], "asv_non": [0.0, 1.0, 2.0, 4.0], "asv_spoof": [3.0, 5.0, 1.0]}
# CM: sorted -1s 0s 1b 1.5s 2b 3b 4b -> DET points (Pmiss, Pfa), k = 0..7:
# (0,1) (0,2/3) (0,1/3) (1/4,1/3) (1/4,0) (1/2,0) (3/4,0) (1,0)
CM_BONA, CM_SPOOF = [1.0, 2.0, 3.0, 4.0], [0.0, 1.5, -1.0]
PTAR, PNON, PSPOOF = 0.95 * 0.99, 0.95 * 0.01, 0.05


def test_asv_error_rates_by_hand() -> None:
    r = asv_error_rates(**ASV)
    assert r.threshold == 3.0
    assert (r.pmiss, r.pfa, r.pfa_spoof) == (0.0, 0.25, 2 / 3)  # accept if score >= 3


def test_legacy_by_hand() -> None:
    c1 = PTAR * (1 - 1 * 0.0) - PNON * 10 * 0.25  # 0.91675
    c2 = 10 * PSPOOF * (1 - 1 / 3)  # 1/3
    points = [(0, 1), (0, 2 / 3), (0, 1 / 3), (1 / 4, 1 / 3), (1 / 4, 0), (1 / 2, 0), (3 / 4, 0), (1, 0)]
    expected = min((c1 * pm + c2 * pf) / min(c1, c2) for pm, pf in points)
    assert expected == pytest.approx(1 / 3)
    assert min_tdcf(CM_BONA, CM_SPOOF, **ASV) == pytest.approx(expected, rel=1e-12)
    assert min_tdcf(CM_BONA, CM_SPOOF, **ASV, form="legacy") == pytest.approx(expected, rel=1e-12)


def test_revised_by_hand() -> None:
    c0 = PTAR * 1 * 0.0 + PNON * 10 * 0.25  # 0.02375
    c1 = PTAR * 1 - c0
    c2 = PSPOOF * 10 * (2 / 3)
    points = [(0, 1), (0, 2 / 3), (0, 1 / 3), (1 / 4, 1 / 3), (1 / 4, 0), (1 / 2, 0), (3 / 4, 0), (1, 0)]
    expected = min((c0 + c1 * pm + c2 * pf) / (c0 + min(c1, c2)) for pm, pf in points)
    assert expected == pytest.approx((0.02375 + 1 / 9) / (0.02375 + 1 / 3), rel=1e-9)
    assert min_tdcf(CM_BONA, CM_SPOOF, **ASV, form="revised") == pytest.approx(expected, rel=1e-12)


def test_constants_form_la_eval() -> None:
    # DET points as above; legacy-la: 2.40595 Pmiss + Pfa.
    legacy = min(2.40595 * pm + pf for pm, pf in [(0, 1 / 3), (1 / 4, 0)])
    assert min_tdcf_from_constants(CM_BONA, CM_SPOOF, *TDCF_CONSTANTS["legacy-la"]) == pytest.approx(legacy)
    revised = min(0.06273 + 2.25501 * pm + 0.93727 * pf for pm, pf in [(0, 1 / 3), (1 / 4, 0)])
    assert min_tdcf_from_constants(CM_BONA, CM_SPOOF, *TDCF_CONSTANTS["revised-la"]) == pytest.approx(revised)
    # a perfect CM has t-DCF C0 / (C0 + min(C1, C2))
    assert min_tdcf_from_constants([5, 6, 7], [0, 1, 2], *TDCF_CONSTANTS["legacy-la"]) == 0.0
    assert min_tdcf_from_constants([5, 6, 7], [0, 1, 2], *TDCF_CONSTANTS["revised-la"]) == pytest.approx(0.06273)


@pytest.mark.parametrize(
    ("bona", "spoof", "consts", "needle"),
    [
        ([1.0, 1.0], [0.0, 0.0], (0, 2, 1), "only 2 unique"),
        ([1.0, math.nan, 3.0], [0.0], (0, 2, 1), "NaN/Inf"),
        ([], [0.0, 1.0, 2.0], (0, 2, 1), "empty"),
        ([1.0, 2.0], [0.0], (0, -1, 1), "C1 must be"),
        ([1.0, 2.0], [0.0], (0, 1, -0.5), "C2 must be"),
        ([1.0, 2.0], [0.0], (0, 0, 1), "normaliser"),
    ],
)
def test_refusals(bona: list, spoof: list, consts: tuple, needle: str) -> None:
    with pytest.raises(ScoreError, match=needle):
        min_tdcf_from_constants(bona, spoof, *consts)


def test_negative_weights_from_asv_scores_refused() -> None:
    # A sign-flipped ASV: 20 targets 0..1.9 below 2 non-targets. The EER is at k = 20
    # (FRR = FAR = 1), threshold 1.9 -> Pmiss = 19/20, Pfa = 1, so the legacy
    # C1 = 0.9405 * (1 - 0.95) - 0.095 * 1 < 0, which the official scorer refuses too.
    tar = [i / 10 for i in range(20)]
    with pytest.raises(ScoreError, match="negative"):
        min_tdcf(CM_BONA, CM_SPOOF, asv_tar=tar, asv_non=[5.0, 6.0], asv_spoof=[1.0])


def test_unknown_form() -> None:
    with pytest.raises(ScoreError, match="valid forms: legacy, revised"):
        min_tdcf(CM_BONA, CM_SPOOF, **ASV, form="bogus")  # type: ignore[arg-type]


soft = st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30)


@settings(max_examples=100, deadline=None)
@given(soft, soft, st.sampled_from(sorted(TDCF_CONSTANTS)))
def test_min_tdcf_in_range(b: list[float], s: list[float], name: str) -> None:
    c0, c1, c2 = TDCF_CONSTANTS[name]
    if len(set(b) | set(s)) < 3:
        return
    v = min_tdcf_from_constants(b, s, c0, c1, c2)
    assert c0 / (c0 + min(c1, c2)) - 1e-12 <= v <= 1.0 + 1e-12
