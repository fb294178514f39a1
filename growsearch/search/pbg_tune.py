"""The Ray Tune adapter of population-based growth (``scheduler: {name: pbg, ...}``).

The rules are :mod:`growsearch.search.pbg` (pure); this module runs them in a live study:

- **Population.** :meth:`PbgScheduler.may_ask` is the searcher's gate
  (``StudySearcher(may_ask=...)``): the study's sampler proposes members until the study has
  ``population`` of them (trials without a ``lineage`` attr: the baseline reference counts);
  after that a new trial is asked only when a child is WAITING. The study ends when nothing
  runs and no child waits (:attr:`PbgScheduler.ended`).
- **Boundaries.** When a member (or a child past its birth boundary) reports ``b`` epochs
  trained, ``b`` a boundary, its dev EER is written in its ``rungs`` attr (evidence for every
  driver and session, as MOASHA's) and it is judged with :func:`~growsearch.search.pbg.exploit`
  against every trial of the study with a value at ``b``, each costed by its applied prefix.
- **Exploit and explore.** A replaced member is recorded PRUNED (``pruned`` attr: scheduler
  ``pbg``, boundary, reason, its parent, the child's parameters and schedule, partial curves,
  FLOPs) *before* Tune stops it; then the child, drawn by
  :func:`~growsearch.search.pbg.draw_child`, is enqueued with its parameters and a
  ``lineage`` attr ``{scheduler, parent, boundary, replaces, generation}``. The child trains
  its own schedule from scratch as far as anything is concerned: the shared-prefix cache
  hands it the parent's state after ``b`` epochs (keyed by the applied events), so its metrics
  equal a replay of its schedule (``growsearch export`` + ``growsearch train --schedule``).
- **A killed driver** loses nothing: RUNNING members and children are reaped and re-enqueued
  (a child keeps its ``lineage``); a member recorded PRUNED whose child was not enqueued yet
  gets it at the next start (:meth:`PbgScheduler.repair`), once (a child names the member it
  ``replaces``).
- Draws are seeded by the study's sampler seed, the replaced trial and the boundary
  (:func:`~growsearch.search.pbg.child_seed`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState
from ray.tune.schedulers import TrialScheduler

from growsearch.search import optuna_private as op
from growsearch.search.attrs import OPTUNA_FIXED_PARAMS, TRIAL_LINEAGE, TRIAL_PRUNED, TRIAL_SCHEDULE
from growsearch.search.moasha import RungPoint
from growsearch.search.moasha_tune import CostsOf, RungScheduler
from growsearch.search.objectives import Objective
from growsearch.search.pbg import Exploit, child_seed, draw_child, exploit, prefix_schedule
from growsearch.search.propose import schedule_key
from growsearch.search.schedulers import PbgConfig
from growsearch.search.space import SearchSpace

if TYPE_CHECKING:
    from growsearch.search.searcher import StudySearcher

__all__ = ["PbgScheduler", "SCHEDULER_NAME", "birth_boundary"]

SCHEDULER_NAME = "pbg"
_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def birth_boundary(trial: FrozenTrial | dict[str, Any]) -> int:
    """The boundary a child was born at (0 for a member)."""
    lineage = TRIAL_LINEAGE.get(trial)
    b = (lineage or {}).get("boundary")
    return int(b) if isinstance(b, int) and not isinstance(b, bool) else 0


class PbgScheduler(RungScheduler):
    """Tune trial scheduler: population-based growth (see the module docstring).

    Args:
        config: the study's ``scheduler`` settings.
        searcher: the study's searcher.
        space: the bound search space (children are drawn from it).
        epochs: the study's epochs.
        objectives: the study's objectives (must include ``dev_eer``).
        costs_of: schedule dict -> final cost metrics by name.
        seed: the sampler's seed (seeds the draws; ``None`` = 0).
        budget_trials: the study's trial budget: no child is made past it.
        checkpoint_of: trial number -> the path of its checkpoint (recorded when replaced).
    """

    def __init__(self, config: PbgConfig, searcher: StudySearcher, *, space: SearchSpace, epochs: int,
                 objectives: Sequence[Objective], costs_of: CostsOf, seed: int | None = None,
                 budget_trials: int | None = None, checkpoint_of: Callable[[int], Path] | None = None) -> None:
        super().__init__(config, config.resolved_boundaries(epochs), searcher, objectives=objectives, costs_of=costs_of,
                         checkpoint_of=checkpoint_of)
        self.space = space
        self.seed = seed
        self.budget_trials = budget_trials
        self.n_children = 0
        self.exploits: list[tuple[int, Exploit]] = []  # (trial number, decision), this session
        self.ended: str | None = None

    def debug_string(self) -> str:
        return (f"Using population-based growth: population {self.config.population}, boundaries {list(self.rungs)}, "
                f"replaced {self.n_stopped}")

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.n_children, self.exploits, self.ended = 0, [], None

    # ---- the searcher's gate ----------------------------------------------------------------
    def _trials(self) -> list[FrozenTrial]:
        study = self.searcher.study
        return op.storage_of(study).get_all_trials(op.study_id_of(study), deepcopy=False, states=_LIVE)

    def may_ask(self) -> bool:
        """Whether the searcher may ask a new trial: a child (or a re-enqueued trial) is waiting,
        or the study has fewer than ``population`` members."""
        trials = self._trials()
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        members = sum(1 for t in trials if TRIAL_LINEAGE.get(t) is None)
        if members < self.config.population:
            return True
        self.ended = (f"population-based growth: the {self.config.population} members and their children have "
                      "finished and no child is waiting")
        return False

    # ---- after a killed driver -------------------------------------------------------------------
    def repair(self) -> int:
        """Enqueue the child of every member recorded PRUNED by ``pbg`` whose child is not in the study
        (its driver died between the two writes). Returns how many."""
        trials = op.storage_of(self.searcher.study).get_all_trials(op.study_id_of(self.searcher.study), deepcopy=False)
        replaced = {(TRIAL_LINEAGE.get(t) or {}).get("replaces") for t in trials if t.state != TrialState.FAIL}
        n = 0
        for t in trials:
            info = TRIAL_PRUNED.get(t) or {}
            child = info.get("child")
            if t.state == TrialState.PRUNED and info.get("scheduler") == SCHEDULER_NAME and isinstance(child, dict) \
                    and t.number not in replaced:
                self._enqueue(child)
                n += 1
        return n

    # ---- the decision ------------------------------------------------------------------------
    def _at_rung(self, tid: str, rung: int, eer: float, epoch: int, result: dict) -> str:
        found = self._record_rung(tid, rung, eer, skip=lambda ft: rung <= birth_boundary(ft))
        if found is None:
            return TrialScheduler.CONTINUE
        ft, schedule = found

        def costed(s: dict[str, Any]) -> dict[str, Any]:
            return prefix_schedule(s, rung)

        me = RungPoint(ft.number, schedule, eer, self._cost_losses(costed(schedule)))
        others = self._evidence(rung, exclude=ft.number, costed=costed)
        rng = random.Random(child_seed(self.seed, ft.number, rung))
        d = exploit(me, others, boundary=rung, quantile=self.config.quantile,
                    min_epochs_after_growth=self.config.min_epochs_after_growth, rng=rng)
        self.exploits.append((ft.number, d))
        if not d.replace or d.parent is None:
            return TrialScheduler.CONTINUE
        trials = self._trials()
        if self.budget_trials is not None and len(trials) + 1 > self.budget_trials:
            return TrialScheduler.CONTINUE  # no room for a child: the member goes on
        parent = next((t for t in trials if t.number == d.parent), None)
        parent_schedule = TRIAL_SCHEDULE.get(parent) if parent is not None else None
        if parent is None or parent_schedule is None:
            return TrialScheduler.CONTINUE
        have = self._schedules(trials)
        drawn = draw_child(self.space, parent_schedule, rung, rng=rng, taken=lambda s: schedule_key(s) in have)
        if drawn is None:
            return TrialScheduler.CONTINUE  # every schedule continuing the parent is tried: the member goes on
        params, child_schedule = drawn
        parent_lineage = TRIAL_LINEAGE.get(parent) or {}
        child = {"params": params, "schedule": child_schedule,
                 "lineage": {"scheduler": SCHEDULER_NAME, "parent": parent.number, "boundary": rung,
                             "replaces": ft.number, "generation": int(parent_lineage.get("generation") or 0) + 1}}
        info = self._pruned_info(tid, rung, epoch, d.reason, result, ft.number)
        info.update({"parent": parent.number, "child": child, "train_flops_saved": self._saved(tid, ft)})
        if not self.searcher.prune(tid, info):
            return TrialScheduler.CONTINUE
        self._enqueue(child)
        self.n_stopped += 1
        self.n_children += 1
        return TrialScheduler.STOP

    def _saved(self, tid: str, ft: FrozenTrial) -> float:
        """Training FLOPs a child did not spend: its restored epochs up to its birth boundary (the
        parent's prefix, from the shared-prefix cache); 0 for a member."""
        birth = birth_boundary(ft)
        flops = self._curves.get(tid, {}).get("train_flops") or []
        if birth <= 0 or len(flops) < birth or flops[birth - 1] is None:
            return 0.0
        return min(self._restored_flops.get(tid, 0.0), float(flops[birth - 1]))

    def _enqueue(self, child: dict[str, Any]) -> None:
        self.searcher.study.enqueue_trial(dict(child["params"]), user_attrs={TRIAL_LINEAGE.key: dict(child["lineage"])},
                                          skip_if_exists=False)

    def _schedules(self, trials: Sequence[FrozenTrial]) -> set[str]:
        """The schedules the study has (every live state; a WAITING trial through its parameters)."""
        out = set()
        for t in trials:
            d = TRIAL_SCHEDULE.get(t)
            if d is None and t.state == TrialState.WAITING and t.system_attrs.get(OPTUNA_FIXED_PARAMS):
                try:
                    d = self.space.decode(t.system_attrs[OPTUNA_FIXED_PARAMS]).to_dict()
                except Exception:  # noqa: BLE001 - parameters of another space version
                    d = None
            if d is not None:
                out.add(schedule_key(d))
        return out


