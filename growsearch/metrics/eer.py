"""Equal error rate and the DET curve, exactly as the official ASVspoof scorer computes them.

Positive class = bona fide; a higher score means more bona fide. All scores are sorted
together with a *stable* sort in which bona fide scores come before spoof scores on ties.
For ``k = 0..N`` (the ``k`` lowest scores rejected)::

    FRR(k) = (# bona fide among the first k) / n_bonafide
    FAR(k) = (# spoof after the first k) / n_spoof

The EER is ``(FRR + FAR) / 2`` at the first ``k`` minimising ``|FRR - FAR|``; there is no
interpolation. Consequences: all-tied scores give 1.0 (not 0.5), and a sign error gives 1.0
on a perfect detector.

Min t-DCF lives in :mod:`growsearch.metrics.tdcf` and uses the same DET curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from growsearch.errors import DataError

__all__ = ["ScoreError", "as_scores", "det_curve", "eer", "eer_threshold"]


class ScoreError(DataError):
    """Scores cannot be evaluated (empty class, NaN/Inf, binary decisions for t-DCF...)."""


def as_scores(scores: Any, *, what: str = "scores", allow_empty: bool = False) -> np.ndarray:
    """Turn a sequence, NumPy array or torch tensor of scores into a flat float64 array.

    Args:
        scores: any 1-D array-like (a torch tensor is detached and moved to the CPU).
        what: name used in error messages (``bona fide scores``...).
        allow_empty: accept an empty array.

    Returns:
        ``(n,)`` float64 array.

    Raises:
        ScoreError: empty (unless allowed), not numeric, or holding NaN/Inf.
    """
    if hasattr(scores, "detach"):  # torch tensor, without importing torch here
        scores = scores.detach().cpu().double().numpy()
    try:
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ScoreError(f"{what} are not numbers: {exc}") from None
    if arr.size == 0 and not allow_empty:
        raise ScoreError(f"{what} are empty: need at least one score per class")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreError(f"{what} contain {int(bad.sum())} NaN/Inf value(s) (first at index {i}: {arr[i]})")
    return arr


def det_curve(bonafide_scores: Any, spoof_scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DET curve of the official scorer (``compute_det_curve``).

    Args:
        bonafide_scores: ``(n_bonafide,)`` scores of the positive class.
        spoof_scores: ``(n_spoof,)`` scores of the negative class.

    Returns:
        ``(frr, far, thresholds)``, each ``(N + 1,)`` with ``N = n_bonafide + n_spoof``:
        ``frr[k]``/``far[k]`` after rejecting the ``k`` lowest scores; ``thresholds[0]`` is
        the lowest score minus 0.001 and ``thresholds[k] = sorted_scores[k - 1]``.

    Raises:
        ScoreError: a class is empty or a score is NaN/Inf.
    """
    bona = as_scores(bonafide_scores, what="bona fide scores")
    spoof = as_scores(spoof_scores, what="spoof scores")
    all_scores = np.concatenate([bona, spoof])
    labels = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])
    order = np.argsort(all_scores, kind="mergesort")  # stable: bona fide first on ties
    labels = labels[order]
    tar_sums = np.cumsum(labels)
    non_sums = spoof.size - (np.arange(1, all_scores.size + 1) - tar_sums)
    frr = np.concatenate([[0.0], tar_sums / bona.size])
    far = np.concatenate([[1.0], non_sums / spoof.size])
    thresholds = np.concatenate([[all_scores[order[0]] - 0.001], all_scores[order]])
    return frr, far, thresholds


def eer_threshold(bonafide_scores: Any, spoof_scores: Any) -> tuple[float, float]:
    """The EER and the threshold where it is reached (official ``compute_eer``).

    Args:
        bonafide_scores: ``(n_bonafide,)`` scores, higher = more bona fide.
        spoof_scores: ``(n_spoof,)`` scores.

    Returns:
        ``(eer, threshold)``, the EER as a fraction in ``[0, 1]``.

    Raises:
        ScoreError: a class is empty or a score is NaN/Inf.
    """
    frr, far, thresholds = det_curve(bonafide_scores, spoof_scores)
    k = int(np.argmin(np.abs(frr - far)))  # first minimiser
    return float(np.mean((frr[k], far[k]))), float(thresholds[k])


def eer(bonafide_scores: Sequence[float] | Any, spoof_scores: Sequence[float] | Any) -> float:
    """The equal error rate as a fraction in ``[0, 1]`` (see the module docstring).

    Args:
        bonafide_scores: ``(n_bonafide,)`` scores, higher = more bona fide.
        spoof_scores: ``(n_spoof,)`` scores.

    Raises:
        ScoreError: a class is empty or a score is NaN/Inf.
    """
    return eer_threshold(bonafide_scores, spoof_scores)[0]
