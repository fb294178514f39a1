"""The propose step of a search: ask the study, suggest a schedule, refuse repeats.

One function, :func:`propose`, shared by the live searcher
(:class:`~growsearch.search.searcher.StudySearcher`, which trains what it proposes) and the
simulator (:mod:`growsearch.search.simulate`, which looks the result up in a GrowBench
table), so that a simulated seed and a live study see the same schedule distribution:

1. ``ask()`` a trial (the live searcher also skips duplicate reference trials there);
2. a reference trial (``reference`` + ``schedule`` user attrs) keeps its schedule;
   otherwise :meth:`SearchSpace.define_by_run` suggests the parameters and
   :meth:`SearchSpace.decode` turns them into the schedule, recorded as the ``schedule``
   user attr;
3. a proposal whose schedule another trial of the study already has (:func:`find_twin`) is
   marked ``duplicate_of`` and handed to ``reject`` (which fails it: never trained), and
   another is asked, at most ``max_repeats`` times in a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from growsearch.errors import ScheduleError
from growsearch.schedule import GrowthSchedule
from growsearch.search import optuna_private as op
from growsearch.search.attrs import (
    OPTUNA_FIXED_PARAMS,
    TRIAL_DUPLICATE_OF,
    TRIAL_PROMOTED_FROM,
    TRIAL_REFERENCE,
    TRIAL_SCHEDULE,
)
from growsearch.search.space import SearchSpace

__all__ = ["Proposal", "find_twin", "propose", "schedule_key"]


@dataclass(frozen=True)
class Proposal:
    """A trial to run: its reference label (``None`` when sampled), parameters and schedule.
    ``attrs`` are the trial's user attrs as they were when it was asked."""

    trial: optuna.Trial
    label: str | None
    params: dict[str, Any]
    schedule: GrowthSchedule
    attrs: dict[str, Any]


def schedule_key(schedule: dict[str, Any]) -> str:
    """Canonical JSON of a stored schedule dict, in one spelling whatever wrote it (an event's
    ``optimizer`` is read as ``optimizer_state``)."""
    try:
        schedule = GrowthSchedule.from_dict(schedule).to_dict()
    except ScheduleError:
        pass  # not a schedule this version reads: compared as stored
    return json.dumps(schedule, sort_keys=True, default=str)


def find_twin(study: optuna.Study, space: SearchSpace, trial: optuna.Trial, sched: GrowthSchedule, *,
              enqueued: bool) -> tuple[int, str] | None:
    """Another trial of ``study`` with the same decoded schedule: ``(number, state)``.

    A fresh proposal yields to any COMPLETE, PRUNED (stopped early by a trial scheduler),
    RUNNING or WAITING trial with its schedule (a WAITING one is compared through its enqueued
    parameters); an enqueued trial (a rerun of an interrupted one) yields only to a COMPLETE or
    PRUNED one; a trial MOASHA promoted (``promoted_from``) never yields to the PRUNED trial it
    continues. Each trial writes its schedule before it looks, so of two drivers proposing the
    same schedule at the same instant at least one sees the other.
    """
    key = schedule_key(sched.to_dict())
    promoted_from = TRIAL_PROMOTED_FROM.get(trial.user_attrs)  # a promoted trial continues that PRUNED one
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    states = done if enqueued else (*done, TrialState.RUNNING, TrialState.WAITING)
    for t in op.storage_of(study).get_all_trials(op.study_id_of(study), deepcopy=False, states=states):
        if t.number == trial.number or t.number == promoted_from:
            continue
        d = TRIAL_SCHEDULE.get(t)
        if d is None and t.state == TrialState.WAITING and t.system_attrs.get(OPTUNA_FIXED_PARAMS):
            try:
                d = space.decode(t.system_attrs[OPTUNA_FIXED_PARAMS]).to_dict()
            except Exception:  # noqa: BLE001 - parameters of another space version: not comparable
                d = None
        if d is not None and schedule_key(d) == key:
            return t.number, t.state.name
    return None


def propose(ask: Callable[[], optuna.Trial], space: SearchSpace, *,
            twin: Callable[[optuna.Trial, GrowthSchedule, dict[str, Any]], tuple[int, str] | None],
            reject: Callable[[optuna.Trial, tuple[int, str]], None], max_repeats: int) -> Proposal | None:
    """Ask until a trial proposes a schedule the study does not have (see the module docstring).

    Args:
        ask: returns a new trial of the study.
        space: the bound search space.
        twin: ``(trial, schedule, user attrs) ->`` the trial that already has the schedule,
            or ``None`` (usually :func:`find_twin`).
        reject: fails a repeated proposal (it already carries ``duplicate_of``).
        max_repeats: repeated proposals in a row before giving up.

    Returns:
        The proposal, or ``None`` after ``max_repeats`` repeats in a row.
    """
    for _ in range(max_repeats):
        trial = ask()
        attrs = trial.user_attrs
        ref, ref_sched = TRIAL_REFERENCE.get(attrs), TRIAL_SCHEDULE.get(attrs)
        label: str | None
        if ref and ref_sched is not None:
            label, params, sched = ref, {}, GrowthSchedule.from_dict(ref_sched)
        else:
            label = None
            space.define_by_run(trial)
            params = dict(trial.params)
            sched = space.decode(params)
        TRIAL_SCHEDULE.set(trial, sched.to_dict())
        if label is not None:
            return Proposal(trial, label, params, sched, attrs)
        found = twin(trial, sched, attrs)
        if found is None:
            return Proposal(trial, label, params, sched, attrs)
        TRIAL_DUPLICATE_OF.set(trial, found[0])
        reject(trial, found)
    return None
