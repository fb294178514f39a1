"""The one wrapper around the hypervolume code (moocore's ``hypervolume``).

Everything in growsearch that needs a hypervolume calls :func:`hypervolume` or
:func:`hypervolume_history`; only this module computes one.

Conventions (documented choice, selectable with ``reference=``):

* **Losses.** Maximised objectives are negated, so every objective is minimised.
* **Reference point** ``r`` (raw units):

  - ``"nadir"`` (default): per objective, the worst loss over the points given (normally
    every COMPLETE trial of the study) plus 10 % of its magnitude: ``r = max * 1.1`` for
    positive objectives such as EER, parameters and FLOPs.
  - ``"fixed"``: EER (``dev_eer``) at 1.0 (the worst possible EER), every other objective
    as in ``"nadir"``.
  - an explicit sequence of numbers, one per objective (in loss units).

* **Normalisation.** Objectives live on very different scales (EER <= 1, parameters and
  FLOPs ~1e6-1e9), so each loss is mapped to ``z = (loss - lo) / (r - lo)`` with
  ``lo = min(0, smallest loss)``; for non-negative objectives (all of ours) this is just
  ``loss / r``. The reference point becomes ``(1, ..., 1)`` and the hypervolume is the
  fraction of the box ``[lo, r]`` that the front dominates: a number in ``[0, 1]``,
  comparable between objectives and unchanged when an objective's unit changes.

Points that do not dominate the reference point (possible with explicit or ``fixed``
references) are clipped to it and so add nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import moocore
import numpy as np

from growsearch.errors import ConfigError
from growsearch.report.front import loss_matrix
from growsearch.search.objectives import Objective
from growsearch.vocabulary import EER

REFERENCE_MODES = ("nadir", "fixed")
MARGIN = 0.1


@dataclass(frozen=True)
class HVSpace:
    """The normalisation of a hypervolume computation.

    Attributes:
        reference: reference point in loss units ``(m,)``.
        lower: lower corner in loss units ``(m,)``; normalised ``z = (loss - lower) / (reference - lower)``.
    """

    reference: np.ndarray
    lower: np.ndarray

    def normalise(self, losses: np.ndarray) -> np.ndarray:
        """Losses ``(n, m)`` -> normalised, clipped to ``<= 1``, ``(n, m)``."""
        span = np.where(self.reference > self.lower, self.reference - self.lower, 1.0)
        return np.minimum((losses - self.lower) / span, 1.0)


def hv_space(
    values: np.ndarray,
    objectives: Sequence[Objective],
    reference: str | Sequence[float] = "nadir",
) -> HVSpace:
    """Choose the reference point and normalisation for ``values`` ``(n, m)``.

    Raises:
        ConfigError: unknown reference mode (lists the valid ones), or an explicit
            reference of the wrong length.
    """
    objectives = list(objectives)
    m = len(objectives)
    losses = loss_matrix(np.asarray(values, dtype=float).reshape(-1, m), objectives)
    if losses.shape[0]:
        hi, lo = losses.max(axis=0), losses.min(axis=0)
    else:
        hi, lo = np.ones(m), np.zeros(m)
    lower = np.minimum(0.0, lo)
    if isinstance(reference, str):
        if reference not in REFERENCE_MODES:
            raise ConfigError(f"hypervolume reference {reference!r} is unknown; valid: {', '.join(REFERENCE_MODES)} or one number per objective")
        scale = np.maximum(np.abs(hi), hi - lo)
        ref = hi + MARGIN * np.where(scale > 0, scale, 1.0)
        if reference == "fixed":
            for i, o in enumerate(objectives):
                if o.name == EER and o.direction == "minimize":
                    ref[i] = 1.0
    else:
        ref = np.asarray(list(reference), dtype=float)
        if ref.shape != (m,):
            names = ", ".join(o.name for o in objectives)
            raise ConfigError(f"hypervolume reference has {ref.size} values but the study has {m} objectives ({names})")
    return HVSpace(reference=ref, lower=lower)


def hypervolume_normalised(z: np.ndarray) -> float:
    """Hypervolume of normalised losses ``(n, m)`` (each ``<= 1``) w.r.t. ``(1, ..., 1)``."""
    if z.shape[0] == 0:
        return 0.0
    m = z.shape[1]
    if m == 1:
        return float(1.0 - z.min())
    return float(moocore.hypervolume(z, ref=np.ones(m)))


def hypervolume(
    values: np.ndarray,
    objectives: Sequence[Objective],
    reference: str | Sequence[float] = "nadir",
    *,
    space: HVSpace | None = None,
) -> float:
    """Normalised hypervolume of the points ``values`` ``(n, m)`` (raw objective values).

    Args:
        values: objective values, one row per trial.
        objectives: the study's objectives (names and directions).
        reference: ``"nadir"``, ``"fixed"`` or one number per objective (loss units).
        space: a precomputed :class:`HVSpace` (overrides ``reference``), so that several
            sets of points can be compared in one space.

    Returns:
        The dominated fraction of the normalised box, in ``[0, 1]``.
    """
    objectives = list(objectives)
    values = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    sp = space or hv_space(values, objectives, reference)
    return hypervolume_normalised(sp.normalise(loss_matrix(values, objectives)))


def hypervolume_history(
    values: np.ndarray,
    objectives: Sequence[Objective],
    reference: str | Sequence[float] = "nadir",
) -> np.ndarray:
    """Hypervolume after each point, in order ``(n, m) -> (n,)``, all in one space.

    The running front is kept; a point dominated by it leaves the hypervolume unchanged
    and costs one vectorised comparison, so only front changes trigger a computation.
    """
    objectives = list(objectives)
    values = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    n = values.shape[0]
    out = np.zeros(n)
    if n == 0:
        return out
    sp = hv_space(values, objectives, reference)
    z = sp.normalise(loss_matrix(values, objectives))
    front = np.zeros((0, z.shape[1]))
    hv = 0.0
    for i in range(n):
        p = z[i]
        if front.shape[0] and np.any(np.all(front <= p, axis=1)):
            out[i] = hv
            continue
        front = np.vstack([front[~np.all(p <= front, axis=1)], p])
        front = front[moocore.is_nondominated(front, keep_weakly=True)]
        hv = hypervolume_normalised(front)
        out[i] = hv
    return out
