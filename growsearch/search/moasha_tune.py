"""The Ray Tune adapter of growth-aware MOASHA (``scheduler: {name: moasha, ...}``).

:class:`MoashaScheduler` is a Tune ``TrialScheduler`` (a ``FIFOScheduler`` that may answer
``STOP``) working with the database-backed :class:`~growsearch.search.searcher.StudySearcher`.
The decision itself is :func:`growsearch.search.moasha.decide` (pure); this module gathers
its inputs and acts on it:

- When a trial's report says it has trained ``r`` epochs, ``r`` a rung (the trainable reports
  every epoch, restored ones included, with ``dev_eer`` when the epoch was evaluated; the
  latest one counts), and the trial was not judged at ``r`` yet (its ``rungs`` attr), its
  value is written on its Optuna trial (``rungs`` attr) so other drivers and later sessions
  see it, and it is judged against every trial of the study with a value at ``r``: the
  ``rungs`` attr of any trial (running, finished, stopped, of any driver) or, for trials run
  without a scheduler, the ``dev_eer`` curve of COMPLETE ones. State lives in the study, not
  here: a restarted driver judges with the same evidence.
- Final costs (the study's cost objectives: ``params``, ``flops``, ``train_flops``) come from
  the schedule alone (``costs_of``, the runner passes a memoised
  :func:`growsearch.train.dryrun.dry_run`); maximised objectives are negated.
- A stopped trial is recorded PRUNED by :meth:`StudySearcher.prune` *before* Tune stops its
  process (``pruned`` attr: rung, reason, partial curves, training FLOPs spent, and the
  resumable checkpoint ``<trial folder>/checkpoint/state.pt`` written after the rung's
  epoch, which stays on disk). A driver killed after that finds it PRUNED; killed before, the
  trial is reaped and re-enqueued like any running trial, resumes from its checkpoint and is
  judged again at its rungs (the rerun reports its restored epochs first), ending COMPLETE or
  PRUNED once.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from growsearch.search import optuna_private as op
from growsearch.search.attrs import (
    TRIAL_CURVES,
    TRIAL_DUPLICATE_OF,
    TRIAL_PROMOTED_FROM,
    TRIAL_PRUNED,
    TRIAL_REFERENCE,
    TRIAL_REQUEUED_FROM,
    TRIAL_RUNGS,
    TRIAL_SCHEDULE,
)
from growsearch.search.moasha import Decision, RungPoint, decide, value_at_rung
from growsearch.search.objectives import Objective
from growsearch.search.schedulers import MoashaConfig
from growsearch.search.searcher import FINAL_KEY
from growsearch.vocabulary import EER

if TYPE_CHECKING:
    from growsearch.search.searcher import StudySearcher

__all__ = ["MoashaScheduler", "RungScheduler", "SCHEDULER_NAME"]

SCHEDULER_NAME = "moasha"
#: Per-epoch report keys kept in a stopped trial's partial curves.
CURVE_KEYS = ("dev_eer", "train_loss", "params", "flops", "train_flops")

CostsOf = Callable[[dict[str, Any]], dict[str, float]]


class RungScheduler(FIFOScheduler):
    """What the study's rung-based trial schedulers share (MOASHA here, population-based growth
    in :mod:`growsearch.search.pbg_tune`): each trial's reported curves, the decision hook
    :meth:`_at_rung` called once per trial and rung with its latest dev EER, the rung
    evidence of every trial of the study, and schedules' costs (memoised).

    Args:
        config: the study's ``scheduler`` settings.
        rungs: the epochs trained at which trials are judged.
        searcher: the study's searcher (its live trials, its study, :meth:`~StudySearcher.prune`).
        objectives: the study's objectives (must include ``dev_eer``).
        costs_of: schedule dict -> final cost metrics by name (memoised here by schedule).
        checkpoint_of: trial number -> the path of its resumable checkpoint (recorded when stopped).
    """

    def __init__(self, config: Any, rungs: Sequence[int], searcher: StudySearcher, *, objectives: Sequence[Objective],
                 costs_of: CostsOf, checkpoint_of: Callable[[int], Path] | None = None) -> None:
        super().__init__()
        self.config = config
        self.rungs = tuple(rungs)
        self.searcher = searcher
        self.objectives = list(objectives)
        self.costs_of = costs_of
        self.checkpoint_of = checkpoint_of
        self._costs: dict[str, tuple[float, ...]] = {}
        self._curves: dict[str, dict[str, list[Any]]] = {}  # Tune trial id -> reported per-epoch values
        self._last_eer: dict[str, float] = {}
        self._lock = threading.RLock()
        self.decisions: list[tuple[int, Decision]] = []  # (trial number, decision), this session
        self.n_stopped = 0
        self._restored_flops: dict[str, float] = {}  # Tune trial id -> training FLOPs of its restored epochs

    # ---- Tune's scheduler interface -------------------------------------------------------
    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(FINAL_KEY) or "epoch" not in result or self.searcher is None:
            return TrialScheduler.CONTINUE
        with self._lock:
            tid = trial.trial_id
            epoch = int(result["epoch"])
            curves = self._curves.setdefault(tid, {k: [] for k in CURVE_KEYS})
            for k in CURVE_KEYS:
                v = result.get(k)
                curves[k].append(float(v) if isinstance(v, int | float) and math.isfinite(v) else None)
            spent = result.get("train_flops")
            if result.get("restored") and isinstance(spent, int | float) and math.isfinite(spent):
                self._restored_flops[tid] = float(spent)
            eer = result.get(EER)
            if isinstance(eer, int | float) and math.isfinite(eer):
                self._last_eer[tid] = float(eer)
            rung = epoch + 1
            if rung not in self.rungs or tid not in self._last_eer:
                return TrialScheduler.CONTINUE
            try:
                return self._at_rung(tid, rung, self._last_eer[tid], epoch, result)
            except Exception as exc:
                if self.searcher.record_storage_fault(exc):
                    return TrialScheduler.CONTINUE
                raise

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._forget(trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial.trial_id)

    # Tune may checkpoint its scheduler with the experiment; the study is the state.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its scheduler with the experiment; the study in the database is the
        # state, so a pickled copy carries only the settings (and decides nothing).
        return {"config": self.config, "rungs": self.rungs, "objectives": self.objectives}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.searcher = None  # type: ignore[assignment]
        self.costs_of = lambda schedule: {}
        self.checkpoint_of = None
        self._costs, self._curves, self._last_eer, self._restored_flops = {}, {}, {}, {}
        self._lock = threading.RLock()
        self.decisions, self.n_stopped = [], 0

    # ---- the decision (subclasses) ----------------------------------------------------------
    def _at_rung(self, tid: str, rung: int, eer: float, epoch: int, result: dict) -> str:
        """Judge Tune trial ``tid`` after ``rung`` epochs (its dev EER ``eer``): CONTINUE or STOP."""
        raise NotImplementedError

    def _record_rung(self, tid: str, rung: int, eer: float,
                     skip: Callable[[FrozenTrial], bool] | None = None) -> tuple[FrozenTrial, dict[str, Any]] | None:
        """Write the trial's dev EER after ``rung`` epochs in its ``rungs`` attr (evidence for the
        others, before deciding) and return ``(trial, schedule)`` to judge; ``None`` when it is
        not this driver's, has no schedule, was judged at ``rung`` already (Tune restarted it and
        it replays its epochs) or ``skip`` says so."""
        live = self.searcher.live.get(tid)
        if live is None:
            return None
        ft = op.storage_of(self.searcher.study).get_trial(op.trial_id_of(live))
        schedule = TRIAL_SCHEDULE.get(ft)
        if schedule is None or (skip is not None and skip(ft)):
            return None
        rungs = dict(TRIAL_RUNGS.get(ft) or {})
        if str(rung) in rungs:
            return None
        rungs[str(rung)] = eer
        TRIAL_RUNGS.set(live, rungs)
        return ft, schedule

    def _pruned_info(self, tid: str, rung: int, epoch: int, reason: str, result: dict, number: int) -> dict[str, Any]:
        """The ``pruned`` attr of a trial stopped at ``rung`` (its partial curves, the training FLOPs it
        spent and those its restored epochs had cost, its resumable checkpoint)."""
        spent = result.get("train_flops")
        return {
            "scheduler": self.config.name,
            "rung": rung,
            "epoch": epoch,
            "reason": reason,
            "curves": {k: list(v) for k, v in self._curves.get(tid, {}).items()},
            "train_flops": float(spent) if isinstance(spent, int | float) and math.isfinite(spent) else None,
            "train_flops_restored": self._restored_flops.get(tid, 0.0),
            "checkpoint": str(self.checkpoint_of(number)) if self.checkpoint_of is not None else None,
        }

    def _forget(self, tid: str) -> None:
        with self._lock:
            self._curves.pop(tid, None)
            self._last_eer.pop(tid, None)
            self._restored_flops.pop(tid, None)

    def _cost_losses(self, schedule: dict[str, Any]) -> tuple[float, ...]:
        """The schedule's final costs for the study's cost objectives, as losses (memoised)."""
        key = json.dumps(schedule.get("events") or [], sort_keys=True, default=str)
        if key not in self._costs:
            names = [o for o in self.objectives if o.name != EER]
            got = self.costs_of(schedule) if names else {}
            self._costs[key] = tuple((1.0 if o.direction == "minimize" else -1.0) * float(got[o.name]) for o in names)
        return self._costs[key]

    def _evidence(self, rung: int, *, exclude: int,
                  costed: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[RungPoint]:
        """Every other trial of the study with a dev EER after ``rung`` epochs; ``costed`` maps a
        schedule to the one whose costs stand for it (default: itself)."""
        out = []
        study = self.searcher.study
        for t in op.storage_of(study).get_all_trials(op.study_id_of(study), deepcopy=False):
            if t.number == exclude or t.state == TrialState.WAITING or TRIAL_DUPLICATE_OF.get(t) is not None:
                continue
            schedule = TRIAL_SCHEDULE.get(t)
            value = _value(t, rung)
            if schedule is None or value is None:
                continue
            try:
                costs = self._cost_losses(costed(schedule) if costed is not None else schedule)
            except Exception:  # noqa: BLE001 - a schedule of another space version: no evidence here
                continue
            out.append(RungPoint(t.number, schedule, value, costs))
        return out


class MoashaScheduler(RungScheduler):
    """Tune trial scheduler: growth-aware MOASHA over the study's objectives (see the module docstring).

    Args:
        config: the study's ``scheduler`` settings.
        searcher: the study's searcher (its live trials, its study, :meth:`~StudySearcher.prune`).
        epochs: the study's epochs.
        objectives: the study's objectives (must include ``dev_eer``).
        costs_of: schedule dict -> final cost metrics by name (memoised here by schedule).
        checkpoint_of: trial number -> the path of its resumable checkpoint (recorded when stopped).
    """

    def __init__(self, config: MoashaConfig, searcher: StudySearcher, *, epochs: int, objectives: Sequence[Objective],
                 costs_of: CostsOf, checkpoint_of: Callable[[int], Path] | None = None) -> None:
        super().__init__(config, config.resolved_rungs(epochs), searcher, objectives=objectives, costs_of=costs_of,
                         checkpoint_of=checkpoint_of)

        self.promotions: list[tuple[int, Decision]] = []  # (PRUNED trial promoted, its new decision), this session

    def debug_string(self) -> str:
        return f"Using growth-aware MOASHA: rungs {list(self.rungs)}, stopped {self.n_stopped}"

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.promotions = []

    def _promoted_at(self, ft: FrozenTrial) -> int:
        """The rung a promoted trial's origin was stopped at (0 when not promoted): it is not judged there again."""
        origin = TRIAL_PROMOTED_FROM.get(ft)
        if origin is None:
            return 0
        study = self.searcher.study
        storage = op.storage_of(study)
        try:
            t = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(op.study_id_of(study), origin))
        except KeyError:
            return 0
        rung = (TRIAL_PRUNED.get(t) or {}).get("rung")
        return int(rung) if isinstance(rung, int) and not isinstance(rung, bool) else 0

    def _at_rung(self, tid: str, rung: int, eer: float, epoch: int, result: dict) -> str:
        found = self._record_rung(tid, rung, eer, skip=lambda ft: rung <= self._promoted_at(ft))
        if found is None:
            return TrialScheduler.CONTINUE
        ft, schedule = found
        me = RungPoint(ft.number, schedule, eer, self._cost_losses(schedule))
        others = self._evidence(rung, exclude=ft.number)
        d = decide(me, others, rung=rung, reduction_factor=self.config.reduction_factor,
                   min_epochs_after_growth=self.config.min_epochs_after_growth)
        self.decisions.append((ft.number, d))
        answer = TrialScheduler.CONTINUE
        if d.stop:
            info = self._pruned_info(tid, rung, epoch, d.reason, result, ft.number)
            info.update({"situation": "settled" if d.situation == "settled" else "unsettled", "kept": list(d.kept_numbers)})
            if self.searcher.prune(tid, info):
                self.n_stopped += 1
                answer = TrialScheduler.STOP
        if self.config.promote:
            self._promote(rung)
        return answer

    def _promote(self, rung: int) -> None:
        """Promote the first trial stopped at ``rung`` that the evidence at ``rung`` now keeps: a new
        trial with its parameters (or reference schedule), ``promoted_from`` and ``requeued_from``
        set to it, so the worker resumes its checkpoint; it is not judged again at ``rung`` or
        before. A stopped trial is promoted once."""
        study = self.searcher.study
        trials = op.storage_of(study).get_all_trials(op.study_id_of(study), deepcopy=False)
        budget = self.searcher.budget_trials
        if budget is not None and sum(1 for t in trials if t.state != TrialState.FAIL) >= budget:
            return  # no room in the trial budget for one more
        promoted = {TRIAL_PROMOTED_FROM.get(t) for t in trials if t.state != TrialState.FAIL}
        evidence = self._evidence(rung, exclude=-1)
        for t in trials:
            info = TRIAL_PRUNED.get(t) or {}
            if t.state != TrialState.PRUNED or info.get("scheduler") != SCHEDULER_NAME or info.get("rung") != rung \
                    or t.number in promoted:
                continue
            me = next((p for p in evidence if p.number == t.number), None)
            if me is None:
                continue
            d = decide(me, [p for p in evidence if p.number != t.number], rung=rung,
                       reduction_factor=self.config.reduction_factor,
                       min_epochs_after_growth=self.config.min_epochs_after_growth)
            if d.stop:
                continue
            attrs: dict[str, Any] = {TRIAL_PROMOTED_FROM.key: t.number, TRIAL_REQUEUED_FROM.key: t.number}
            if TRIAL_REFERENCE.get(t):
                attrs.update({TRIAL_REFERENCE.key: TRIAL_REFERENCE.get(t), TRIAL_SCHEDULE.key: TRIAL_SCHEDULE.get(t)})
            study.enqueue_trial(dict(t.params), user_attrs=attrs, skip_if_exists=False)
            self.promotions.append((t.number, d))
            return


def _value(t: FrozenTrial, rung: int) -> float | None:
    v = (TRIAL_RUNGS.get(t) or {}).get(str(rung))
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    if t.state == TrialState.COMPLETE:  # a trial run without a scheduler: its full curve
        curve = (TRIAL_CURVES.get(t) or {}).get(EER)
        if isinstance(curve, list):
            return value_at_rung(curve, rung)
    return None
