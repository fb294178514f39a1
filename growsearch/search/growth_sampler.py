"""``sampler: growth``: a growth-aware sampler for flat (enumerable) growth spaces.

A growth schedule of a flat space (:meth:`growsearch.search.space.SearchSpace.grid`) is a
handful of factors: where it grows, how much, when, how the new units start and train, and
whether they are shrunk back. The objectives are close to additive in these factors: the
parameter count is fixed by point x amount x shrink, training FLOPs by point x amount x
epoch x shrink, and the dev EER moves with each factor. Optuna's general samplers do not use
that: on a few dozen trials TPE and GP model a 10-dimensional space from scratch, NSGA-II
needs generations it does not get.

This sampler, after ``n_startup`` random trials, fits per objective a ridge regression on
one-hot factors plus the point x amount interaction (costs on a log scale), refits it on a
bootstrap resample of the COMPLETE trials (Thompson sampling: the resample is the model's
uncertainty), predicts every grid point not yet tried, and proposes the one whose predicted
objective vector adds the most hypervolume to the current Pareto front (ties: at random).
Every random choice comes from ``self.rng``, which :class:`~growsearch.search.sampling.TrialSeededSampler`
reseeds per trial like Optuna's own samplers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from growsearch.report.hypervolume import hv_space, hypervolume
from growsearch.search.objectives import Objective

__all__ = ["GrowthAwareSampler"]

#: Ridge penalty of the additive model (on standardised targets).
RIDGE = 1.0


class GrowthAwareSampler(BaseSampler):
    """See the module docstring.

    Args:
        grid: the flat space's parameters and their choices (``SearchSpace.grid()``).
        seed: seed of ``rng`` (reseeded per trial by the study's wrapper).
        n_startup: random trials before the model is used.
    """

    def __init__(self, grid: dict[str, list[Any]], *, seed: int | None = None, n_startup: int = 8) -> None:
        self.grid = {k: list(v) for k, v in grid.items()}
        self.names = sorted(self.grid)
        self.n_startup = n_startup
        self.rng = np.random.RandomState(seed)
        self.random = RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()
        self._candidates = [dict(zip(self.names, c, strict=True)) for c in itertools.product(*(self.grid[n] for n in self.names))]
        self._features = np.asarray([self._encode(c) for c in self._candidates], dtype=float)

    # ---- the model ------------------------------------------------------------------------
    def _encode(self, params: dict[str, Any]) -> list[float]:
        row: list[float] = [1.0]
        for name in self.names:
            choices = self.grid[name]
            if len(choices) > 1:
                row.extend(1.0 if params.get(name) == c else 0.0 for c in choices[1:])
        points = [n for n in self.names if n.endswith(".point")]
        for pn in points:  # point x amount: what a layer's growth costs depends on both
            sn = pn[: -len("point")] + "size"
            if sn in self.grid:
                for p, s in itertools.product(self.grid[pn], self.grid[sn]):
                    row.append(1.0 if params.get(pn) == p and params.get(sn) == s else 0.0)
        return row

    @staticmethod
    def _fit_predict(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
        mu, sd = y.mean(), y.std() or 1.0
        a = x.T @ x + RIDGE * np.eye(x.shape[1])
        w = np.linalg.solve(a, x.T @ ((y - mu) / sd))
        return mu + sd * (xq @ w)

    # ---- Optuna's sampler interface -----------------------------------------------------------
    def reseed_rng(self) -> None:
        self.rng.seed()
        self.random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self._space.calculate(study)
        return space if set(self.names) <= set(space) else {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if set(self.names) <= set(t.params) and t.values is not None]
        if len(done) < self.n_startup:
            return {}
        tried = {tuple(t.params.get(n) for n in self.names) for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and set(self.names) <= set(t.params)}
        free = [i for i, c in enumerate(self._candidates) if tuple(c[n] for n in self.names) not in tried]
        if not free:
            return {}
        objectives = [Objective.recorded(f"objective_{i}", "minimize" if d.name == "MINIMIZE" else "maximize")
                      for i, d in enumerate(study.directions)]
        values = np.asarray([t.values for t in done], dtype=float)
        x = np.asarray([self._encode(t.params) for t in done], dtype=float)
        boot = self.rng.randint(0, len(done), size=len(done))
        xq = self._features[free]
        pred = np.empty((len(free), values.shape[1]))
        for j in range(values.shape[1]):
            y = values[:, j]
            logged = bool((y > 0).all()) and y.max() > 10 * max(y.min(), 1e-300)  # costs: log scale
            yt = np.log(y) if logged else y
            p = self._fit_predict(x[boot], yt[boot], xq)
            pred[:, j] = np.exp(p) if logged else p
        space = hv_space(values, objectives, "nadir")
        base = hypervolume(values, objectives, space=space)
        gain = np.asarray([hypervolume(np.vstack([values, pred[i]]), objectives, space=space) - base for i in range(len(free))])
        best = np.flatnonzero(gain >= gain.max() - 1e-12)
        pick = self._candidates[free[int(self.rng.choice(best))]]
        return {n: pick[n] for n in self.names if n in search_space}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return self.random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None
