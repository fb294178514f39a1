"""The wrapped sampler's view of a study: reference trials (finished, no parameters) are
shown as FAIL trials at their place, so model-based samplers keep their search space and
Optuna's genetic samplers, which index the trial list by trial number, keep working."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from growsearch.search.sampling import TrialSeededSampler, sampler_view

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study_with_references(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for label in ("baseline", "explode"):
        study.enqueue_trial({}, user_attrs={"reference": label})
    study.tell(study.ask(), [0.5, 1.0])  # a COMPLETE reference: no parameters
    study.tell(study.ask(), state=TrialState.FAIL)  # a reference that failed (a NaN loss)
    return study


def test_nsga2_with_references_and_a_running_trial() -> None:
    """Two parameterless references, then a trial left RUNNING while others finish: NSGA-II
    read ``trials[trial.number]`` from a list the old view had shortened (IndexError)."""
    study = _study_with_references(TrialSeededSampler(optuna.samplers.NSGAIISampler(population_size=2, seed=0), 0))
    running = study.ask()
    running.suggest_int("x", 0, 10)
    for _ in range(8):
        t = study.ask()
        x = t.suggest_int("x", 0, 10)
        study.tell(t, [x / 10, 1 - x / 10])
    assert len(study.trials) == 11 and study.trials[2].state == TrialState.RUNNING


def test_references_are_fail_in_the_view_at_their_place_and_unchanged_in_the_study() -> None:
    study = _study_with_references(optuna.samplers.RandomSampler(seed=0))
    t = study.ask()
    t.suggest_float("x", 0, 1)
    study.tell(t, [0.1, 0.2])
    view = sampler_view(study)
    seen = view._get_trials(deepcopy=False, use_cache=True)
    assert [s.number for s in seen] == [0, 1, 2]  # positions kept: index == number
    assert [s.state for s in seen] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert [s.number for s in view.get_trials(states=(TrialState.COMPLETE,))] == [2]
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].values == [0.5, 1.0]


def test_tpe_keeps_its_joint_search_space_after_a_reference() -> None:
    sampler = TrialSeededSampler(optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=2), 0)
    study = _study_with_references(sampler)
    for _ in range(3):
        t = study.ask()
        x, y = t.suggest_float("x", 0, 1), t.suggest_int("y", 0, 3)
        study.tell(t, [x, y])
    probe = study.ask()
    space = sampler.infer_relative_search_space(study, study._storage.get_trial(probe._trial_id))
    assert set(space) == {"x", "y"}  # a COMPLETE parameterless trial would empty the intersection
