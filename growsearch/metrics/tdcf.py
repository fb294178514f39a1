"""Minimum tandem detection cost function (t-DCF), legacy (ASVspoof 2019) and revised (2021).

Both forms are minimised over the thresholds of the CM DET curve of
:func:`growsearch.metrics.eer.det_curve` (same tie rule as the EER). The ASV side enters
through three error rates taken at the ASV EER threshold (accept if ``score >= threshold``).

Cost model (``shared/docs/DATA.md``): ``Pspoof = 0.05``, ``Ptar = 0.95 * 0.99``,
``Pnon = 0.95 * 0.01``, ``Cmiss = 1``, ``Cfa = 10``, ``Cfa_spoof = 10`` for CM and ASV alike.

- legacy: ``C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv``,
  ``C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv)``, ``t-DCF = (C1 Pmiss_cm + C2 Pfa_cm) / min(C1, C2)``;
- revised: ``C0 = Ptar Cmiss Pmiss_asv + Pnon Cfa Pfa_asv``, ``C1 = Ptar Cmiss - C0``,
  ``C2 = Pspoof Cfa_spoof Pfa_spoof_asv``, ``t-DCF = (C0 + C1 Pmiss_cm + C2 Pfa_cm) / (C0 + min(C1, C2))``.

Both are the general form ``(C0 + C1 Pmiss_cm + C2 Pfa_cm) / (C0 + min(C1, C2))`` (legacy:
``C0 = 0``), which :func:`min_tdcf_from_constants` evaluates for published constants such
as :data:`TDCF_CONSTANTS` ``["legacy-la"]`` (LA eval: ``2.40595 Pmiss_cm + Pfa_cm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from growsearch.metrics.eer import ScoreError, as_scores, det_curve, eer_threshold
from growsearch.metrics.scores import read_asv_scores  # re-exported: t-DCF needs ASV scores

__all__ = [
    "COST_MODEL",
    "TDCF_CONSTANTS",
    "AsvErrorRates",
    "TDCFUndefined",
    "asv_error_rates",
    "min_tdcf",
    "min_tdcf_from_constants",
    "read_asv_scores",
    "tdcf_constants",
]

#: The ASVspoof 2019 / 2021 cost model (CM and ASV share costs).
COST_MODEL: dict[str, float] = {
    "Pspoof": 0.05,
    "Ptar": (1 - 0.05) * 0.99,
    "Pnon": (1 - 0.05) * 0.01,
    "Cmiss": 1.0,
    "Cfa": 10.0,
    "Cfa_spoof": 10.0,
}

#: Published normalised constants ``(C0, C1, C2)`` (ASVspoof 2019 LA evaluation set).
TDCF_CONSTANTS: dict[str, tuple[float, float, float]] = {
    "legacy-la": (0.0, 2.40595, 1.0),
    "revised-la": (0.06273, 2.25501, 0.93727),
}

Form = Literal["legacy", "revised"]


@dataclass(frozen=True)
class AsvErrorRates:
    """ASV error rates at the ASV EER threshold.

    Attributes:
        threshold: the ASV EER threshold (accept if ``score >= threshold``).
        pmiss: fraction of target trials rejected.
        pfa: fraction of non-target trials accepted.
        pfa_spoof: fraction of spoof trials accepted (``1 - Pmiss_spoof_asv``).
    """

    threshold: float
    pmiss: float
    pfa: float
    pfa_spoof: float


def asv_error_rates(asv_tar: Any, asv_non: Any, asv_spoof: Any) -> AsvErrorRates:
    """ASV error rates at the threshold of the ASV EER (target vs non-target).

    Args:
        asv_tar: ``(n_tar,)`` ASV scores of target trials.
        asv_non: ``(n_non,)`` ASV scores of non-target (zero-effort impostor) trials.
        asv_spoof: ``(n_spoof,)`` ASV scores of spoofed trials.

    Raises:
        ScoreError: an empty class or NaN/Inf scores.
    """
    tar = as_scores(asv_tar, what="ASV target scores")
    non = as_scores(asv_non, what="ASV non-target scores")
    spoof = as_scores(asv_spoof, what="ASV spoof scores")
    _, thr = eer_threshold(tar, non)
    return AsvErrorRates(
        threshold=thr,
        pmiss=float(np.sum(tar < thr) / tar.size),
        pfa=float(np.sum(non >= thr) / non.size),
        pfa_spoof=float(np.sum(spoof >= thr) / spoof.size),
    )


def tdcf_constants(rates: AsvErrorRates, *, form: Form = "legacy", cost: dict[str, float] | None = None) -> tuple[float, float, float]:
    """The unnormalised ``(C0, C1, C2)`` of one t-DCF form for given ASV error rates.

    Raises:
        ScoreError: unknown form.
    """
    c = COST_MODEL if cost is None else {**COST_MODEL, **cost}
    if form == "legacy":
        c1 = c["Ptar"] * (c["Cmiss"] - c["Cmiss"] * rates.pmiss) - c["Pnon"] * c["Cfa"] * rates.pfa
        c2 = c["Cfa"] * c["Pspoof"] * rates.pfa_spoof
        return 0.0, c1, c2
    if form == "revised":
        c0 = c["Ptar"] * c["Cmiss"] * rates.pmiss + c["Pnon"] * c["Cfa"] * rates.pfa
        c1 = c["Ptar"] * c["Cmiss"] - c0
        c2 = c["Pspoof"] * c["Cfa_spoof"] * rates.pfa_spoof
        return c0, c1, c2
    raise ScoreError(f"unknown t-DCF form {form!r}; valid forms: legacy, revised")


class TDCFUndefined(ScoreError):
    """The t-DCF is undefined for these ASV error rates (its normaliser is 0).

    The official ASVspoof scorer divides by zero here and returns NaN. ``reason`` says why,
    in one line, for reports that show the EER anyway.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def min_tdcf_from_constants(cm_bona: Any, cm_spoof: Any, c0: float, c1: float, c2: float) -> float:
    """Min over CM thresholds of ``(c0 + c1 Pmiss_cm + c2 Pfa_cm) / (c0 + min(c1, c2))``.

    Args:
        cm_bona: ``(n_bonafide,)`` CM scores, higher = more bona fide.
        cm_spoof: ``(n_spoof,)`` CM scores.
        c0, c1, c2: the t-DCF constants (legacy: ``c0 = 0``).

    Returns:
        The normalised minimum t-DCF (at most 1.0 for valid constants).

    Raises:
        ScoreError: NaN/Inf or empty scores, fewer than 3 unique CM scores (binary
            decisions), negative or non-finite constants, or a zero normaliser.
    """
    consts = {"C0": c0, "C1": c1, "C2": c2}
    for k, v in consts.items():
        if not np.isfinite(v) or v < 0:
            raise ScoreError(f"t-DCF constant {k} must be finite and >= 0 (got {v}); check the ASV scores")
    bona = as_scores(cm_bona, what="bona fide CM scores")
    spoof = as_scores(cm_spoof, what="spoof CM scores")
    n_uniq = np.unique(np.concatenate([bona, spoof])).size
    if n_uniq < 3:
        raise ScoreError(f"CM scores have only {n_uniq} unique value(s): t-DCF needs soft scores, not binary decisions")
    norm = c0 + min(c1, c2)
    if norm <= 0:
        raise TDCFUndefined(f"t-DCF normaliser C0 + min(C1, C2) is {norm}: cannot normalise")
    pmiss, pfa, _ = det_curve(bona, spoof)
    return float(np.min((c0 + c1 * pmiss + c2 * pfa) / norm))


def min_tdcf(
    cm_bona: Any,
    cm_spoof: Any,
    *,
    asv_tar: Any,
    asv_non: Any,
    asv_spoof: Any,
    form: Form = "legacy",
) -> float:
    """The normalised minimum t-DCF of a CM given ASV scores.

    Args:
        cm_bona: ``(n_bonafide,)`` CM scores of bona fide trials.
        cm_spoof: ``(n_spoof,)`` CM scores of spoofed trials.
        asv_tar: ``(n_tar,)`` ASV target scores.
        asv_non: ``(n_non,)`` ASV non-target scores.
        asv_spoof: ``(n_asv_spoof,)`` ASV scores of spoofed trials.
        form: ``legacy`` (ASVspoof 2019 papers) or ``revised`` (2021).

    Raises:
        TDCFUndefined: the ASV system accepts no spoofed trials (legacy form: C2 = 0, so the
            normaliser is 0); the official scorer returns NaN.
        ScoreError: see :func:`min_tdcf_from_constants` and :func:`asv_error_rates`;
            also a negative C1 or C2 from implausible ASV error rates.
    """
    rates = asv_error_rates(asv_tar, asv_non, asv_spoof)
    c0, c1, c2 = tdcf_constants(rates, form=form)
    if c1 < 0 or c2 < 0:
        raise ScoreError(
            f"{form} t-DCF weights are negative (C1={c1:.5g}, C2={c2:.5g}) for ASV Pmiss={rates.pmiss:.4g}, "
            f"Pfa={rates.pfa:.4g}, Pfa_spoof={rates.pfa_spoof:.4g}: check the ASV scores"
        )
    if c0 + min(c1, c2) <= 0 and rates.pfa_spoof == 0:
        raise TDCFUndefined(
            f"{form} t-DCF undefined: the ASV system accepts no spoofed trials at its EER threshold "
            f"(Pfa_spoof = 0, so C2 = 0 and the normaliser C0 + min(C1, C2) is 0; the official scorer returns NaN)"
        )
    return min_tdcf_from_constants(cm_bona, cm_spoof, c0, c1, c2)
