"""Pareto fronts and hypervolumes keep their values across the library that computes them.

The expected numbers below were computed by growsearch's reports when they still called
Optuna's private ``_hypervolume`` / ``_is_pareto_front`` (Optuna 5.0.0); the reports now use
moocore. Fronts with ties, duplicates, maximised objectives, 2 and 3 objectives.
"""

from __future__ import annotations

import numpy as np
import pytest

from growsearch.report.front import Objective, pareto_mask
from growsearch.report.hypervolume import hypervolume, hypervolume_history


def _mn(name: str) -> Objective:
    return Objective.recorded(name, "minimize")


def _mx(name: str) -> Objective:
    return Objective.recorded(name, "maximize")


CASES = {
    "two": (
        [[0.1, 5.0], [0.2, 3.0], [0.3, 1.0], [0.25, 4.0], [0.1, 6.0]],
        [_mn("dev_eer"), _mn("params")],
        [True, True, True, False, False],
        0.3158861340679522, 0.6727272727272727,
        [0.1689623507805326, 0.288337924701561, 0.3158861340679522, 0.3158861340679522, 0.3158861340679522],
    ),
    "ties_and_duplicates": (
        [[0.1, 5.0], [0.1, 5.0], [0.2, 5.0], [0.2, 3.0], [0.3, 3.0], [0.05, 9.0]],
        [_mn("dev_eer"), _mn("params")],
        [True, True, False, True, False, True],
        0.4383226201408019, 0.6116161616161616,
        [0.344964799510254, 0.344964799510254, 0.344964799510254, 0.4245485154576063, 0.4245485154576063,
         0.4383226201408019],
    ),
    "maximised": (
        [[0.9, 5.0], [0.8, 3.0], [0.95, 7.0], [0.7, 4.0], [0.95, 7.0]],
        [_mx("acc"), _mn("params")],
        [True, True, True, False, True],
        0.4480519480519482, 0.4480519480519482,
        [0.2958603896103897, 0.43384740259740273, 0.4480519480519482, 0.4480519480519482, 0.4480519480519482],
    ),
    "three": (
        [[0.1, 5., 100.], [0.2, 3., 50.], [0.3, 1., 80.], [0.15, 4., 120.], [0.1, 5., 100.], [0.4, 6., 200.],
         [0.2, 2., 60.]],
        [_mn("dev_eer"), _mn("params"), _mn("flops")],
        [True, True, True, True, True, False, True],
        0.35856498873027803, 0.5095041322314049,
        [0.10217881292261458, 0.2599549211119459, 0.32131229651890814, 0.3291384923616329, 0.3291384923616329,
         0.3291384923616329, 0.35856498873027803],
    ),
    "three_maximised": (
        [[0.1, 5., 0.5], [0.2, 3., 0.9], [0.3, 1., 0.2], [0.2, 3., 0.9], [0.25, 3., 0.8]],
        [_mn("dev_eer"), _mn("params"), _mx("acc")],
        [True, True, True, True, False],
        0.19530607133912917, 0.3911452184179457,
        [0.030446137884154418, 0.19230081213552283, 0.19530607133912917, 0.19530607133912917, 0.19530607133912917],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_front_and_hypervolumes_keep_their_values(name: str) -> None:
    values, objectives, mask, hv_nadir, hv_fixed, history = CASES[name]
    v = np.asarray(values, dtype=float)
    assert pareto_mask(v, objectives).tolist() == mask
    assert hypervolume(v, objectives) == pytest.approx(hv_nadir, rel=1e-12)
    assert hypervolume(v, objectives, "fixed") == pytest.approx(hv_fixed, rel=1e-12)
    assert hypervolume_history(v, objectives).tolist() == pytest.approx(history, rel=1e-12)


def test_explicit_reference_points_keep_their_values() -> None:
    two, three = CASES["two"], CASES["three"]
    # points beyond an explicit reference are clipped to it and add nothing
    assert hypervolume(np.asarray(two[0]), two[1], [0.25, 4.5]) == pytest.approx(0.06666666666666667, rel=1e-12)
    assert hypervolume(np.asarray(three[0]), three[1], [0.35, 5.5, 150]) == pytest.approx(0.20259740259740258, rel=1e-12)


def test_empty_and_single_objective() -> None:
    assert pareto_mask(np.zeros((0, 2)), [_mn("a"), _mn("b")]).tolist() == []
    assert hypervolume(np.zeros((0, 2)), [_mn("a"), _mn("b")]) == 0.0
    assert hypervolume(np.asarray([[2.0], [1.0]]), [_mn("a")]) == pytest.approx(1.0 - 1.0 / 2.2, rel=1e-12)
