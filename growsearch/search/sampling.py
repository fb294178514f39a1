"""The study's sampler, reseeded for every trial from ``(sampler.seed, trial number)``.

Optuna samplers draw from a random state seeded once, when the sampler is built. Every
``growsearch run`` builds a new one, so each driver (each run, each of several drivers on one
study) replayed the same random sequence and proposed the schedules earlier runs had already
trained. :class:`TrialSeededSampler` wraps the configured sampler and, before each trial,
seeds every random state the sampler holds (the sampler's own, its fallback random sampler's,
NSGA-II's child-generation strategy's, found by walking the sampler's attributes) from the
seed and the trial's number. What a trial is proposed then depends only on the seed, its
number and the study's history, never on which run or driver asked for it.

The wrapped sampler also does not see the study's finished trials that have no parameters:
reference trials (the baseline, schedule files) enqueued with their schedule only. Seen,
one such COMPLETE trial empties Optuna's intersection search space for good, and every
model-based sampler (TPE multivariate, GP, NSGA-II's crossover) silently falls back to
independent random sampling for the rest of the study (docs/SEARCH_QUALITY.md). They are
shown to it as FAIL trials at their place in the list (Optuna's genetic samplers index the
list by trial number; dropping them broke NSGA-II with an ``IndexError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, GridSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from growsearch.search.optuna_private import LazyRandomState, TrialsView

__all__ = ["StudyGridSampler", "TrialSeededSampler", "random_states", "sampler_view", "trial_seed"]


def trial_seed(seed: int, number: int, index: int = 0) -> int:
    """The seed of random state ``index`` of a sampler for trial ``number``."""
    return int(np.random.SeedSequence([int(seed), int(number), int(index)]).generate_state(1)[0])


def random_states(obj: Any) -> list[np.random.RandomState]:
    """Every numpy random state reachable from ``obj`` through Optuna's (and growsearch's
    own samplers') objects' attributes,
    in a fixed order (attribute names sorted), each once (shared states stay shared)."""
    out: list[np.random.RandomState] = []
    seen: set[int] = set()

    def walk(o: Any) -> None:
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, LazyRandomState):
            out.append(o.rng)
        elif isinstance(o, np.random.RandomState):
            out.append(o)
        elif isinstance(o, list | tuple):
            for x in o:
                walk(x)
        elif type(o).__module__.split(".")[0] in ("optuna", "growsearch") and hasattr(o, "__dict__"):
            for key in sorted(vars(o)):
                walk(vars(o)[key])

    walk(obj)
    return out


def _parameterless(trial: FrozenTrial) -> bool:
    return trial.state.is_finished() and not trial.params


def sampler_view(study: Study) -> Study:
    """``study`` as the wrapped sampler sees it: its finished parameterless trials (references)
    shown as FAIL trials at their place (see the module docstring)."""
    return cast(Study, TrialsView(study, _parameterless))


class TrialSeededSampler(BaseSampler):
    """``inner`` with its random states reseeded from ``(seed, trial.number)`` before each
    trial (see the module docstring). ``seed=None`` leaves ``inner`` as it is."""

    def __init__(self, inner: BaseSampler, seed: int | None) -> None:
        self.inner = inner
        self.seed = seed

    def __str__(self) -> str:
        return f"{self.inner} (reseeded per trial from seed {self.seed})"

    def reseed_for(self, number: int) -> None:
        if self.seed is None:
            return
        for i, rng in enumerate(random_states(self.inner)):
            rng.seed(trial_seed(self.seed, number, i))

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.reseed_for(trial.number)
        self.inner.before_trial(sampler_view(study), trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(sampler_view(study), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(sampler_view(study), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(sampler_view(study), trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.inner.after_trial(sampler_view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()



class StudyGridSampler(GridSampler):
    """Optuna's ``GridSampler`` (``sampler: grid``) that never calls ``study.stop()``.

    The stock sampler stops the study from ``after_trial`` once every grid point was tried,
    which raises outside ``study.optimize`` (growsearch drives ask-and-tell). The study's
    trial budget ends a grid study instead; a grid point whose schedule another point already
    gave is failed as a duplicate by the searcher (never trained), so the budget to set is the
    number of distinct schedules (``bench/growbench.py`` counts them).
    """

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None
