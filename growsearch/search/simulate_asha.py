"""Simulated search with a pool of workers and growth-aware MOASHA on a GrowBench table.

:func:`growsearch.search.simulate.simulate` runs one trial at a time to its last epoch. This
module adds what a live study with ``scheduler: {name: moasha, ...}`` does, so the compute a
scheduler saves can be read off a table in seconds (issue 14, item 4):

- **Workers.** ``workers`` trials run at once, asynchronously: each worker spends training
  FLOPs at the same rate, so a trial's simulated time is its start plus the FLOPs it has
  trained (the table's cumulative ``train_flops_curve``), and the next proposal is asked for
  when a worker frees (the live searcher's propose step, as in ``simulate``). The clock of a
  finished trial is the cumulative training FLOPs **actually spent** by all trials by then,
  running ones included (what a study would have paid at that moment).
- **Rungs.** At each rung ``r`` of the scheduler (epochs trained) a running trial's rung
  point is its dev EER after ``r`` epochs (``moasha.value_at_rung`` of the table's curve) and
  its schedule's final costs (the study's cost objectives from the table's row: known from
  the schedule before training). It is recorded first and then judged with
  :func:`growsearch.search.moasha.decide` against every other trial that reached ``r`` so far
  (running, finished or stopped), exactly as :class:`~growsearch.search.moasha_tune.MoashaScheduler`
  does with the study's ``rungs`` attrs.
- **Stopped trials** cost only the FLOPs up to their rung, are told to the study the way
  :meth:`~growsearch.search.searcher.StudySearcher.prune` tells them (``pruned`` and partial
  ``curves`` attrs, state PRUNED: the sampler sees what it sees live), count toward the trial
  budget like in a live study, and have no objective values (never on a front, never in a
  hypervolume).

With ``workers=1`` and no scheduler this is ``simulate`` (same proposals, values and clock).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from growsearch.errors import ConfigError
from growsearch.search.attrs import (
    TRIAL_CURVES,
    TRIAL_PRUNED,
    TRIAL_RUNGS,
)
from growsearch.search.moasha import Decision, RungPoint, decide, value_at_rung
from growsearch.search.schedulers import MoashaConfig
from growsearch.search.simulate import Table, TableStudy, row_key
from growsearch.search.simulate_clock import PrefixLedger, SimRun, WorkerClock, cumulative_flops
from growsearch.search.space import SearchSpace
from growsearch.vocabulary import EER, Direction

__all__ = ["AshaTrial", "simulate_asha", "simulate_asha_study"]

#: The scheduler name written in a simulated PRUNED trial's ``pruned`` attr.
SCHEDULER_NAME = "moasha"


@dataclass(frozen=True)
class AshaTrial:
    """One finished simulated trial.

    Attributes:
        number: the Optuna trial number.
        label: its reference label (``baseline``) or ``None``.
        key: the schedule's table key (:func:`growsearch.search.simulate.row_key`).
        state: ``COMPLETE`` or ``PRUNED``.
        values: the objective values told (COMPLETE), ``None`` when PRUNED.
        rung: the rung it was stopped at (PRUNED), else ``None``.
        spent: training FLOPs this trial cost (up to its rung when PRUNED).
        start: simulated time it started (a worker's training FLOPs).
        end: simulated time it finished.
        clock: cumulative training FLOPs spent by all trials when it finished.
        decision: the MOASHA decision that stopped it (PRUNED), else ``None``.
    """

    number: int
    label: str | None
    key: str
    state: str
    values: list[float] | None
    rung: int | None
    spent: float
    start: float
    end: float
    clock: float
    decision: Decision | None = None


@dataclass
class _Running(SimRun):
    costs: tuple[float, ...]
    next_rung: int = 0  # index into the rungs still to come


def simulate_asha(table: Table, sampler: optuna.samplers.BaseSampler, *, objectives: Sequence[str],
                  directions: Sequence[Direction], trials: int, seed: str, workers: int = 2,
                  scheduler: MoashaConfig | None = None, flops_budget: float | None = None,
                  references: Sequence[str] = ("baseline",), space: SearchSpace | None = None,
                  prefix_reuse: bool = False) -> list[AshaTrial]:
    """Run a simulated study with ``workers`` asynchronous workers and, optionally, MOASHA
    (:func:`simulate_asha_study` without the study)."""
    return simulate_asha_study(table, sampler, objectives=objectives, directions=directions, trials=trials, seed=seed,
                               workers=workers, scheduler=scheduler, flops_budget=flops_budget, references=references,
                               space=space, prefix_reuse=prefix_reuse)[1]


def simulate_asha_study(table: Table, sampler: optuna.samplers.BaseSampler, *, objectives: Sequence[str],
                        directions: Sequence[Direction], trials: int, seed: str, workers: int = 2,
                        scheduler: MoashaConfig | None = None, flops_budget: float | None = None,
                        references: Sequence[str] = ("baseline",), space: SearchSpace | None = None,
                        prefix_reuse: bool = False) -> tuple[optuna.Study, list[AshaTrial]]:
    """Run a simulated study with ``workers`` asynchronous workers and, optionally, MOASHA.

    Args:
        table: the GrowBench table.
        sampler: the study's sampler (``runner.sampler_for``).
        objectives: metric names in the study's order (``dev_eer`` among them when
            ``scheduler`` is given); ``directions`` theirs.
        trials: the trial budget: trials started, COMPLETE or PRUNED (references included),
            as ``budget.trials`` in a live study.
        seed: the table's training seed whose results the trials see.
        workers: trials run at once.
        scheduler: MOASHA's settings, or ``None`` (every trial trains to its last epoch).
        flops_budget: no trial starts once the training FLOPs spent reach this (running
            ones finish), as ``budget.train_flops``.
        references: labels of table rows enqueued first.
        space: the space to propose from (default: the table's).
        prefix_reuse: a trial starts from the deepest state of its schedule another trial has
            trained by then and is charged only the epochs after it
            (:class:`~growsearch.search.simulate_clock.PrefixLedger`).

    Returns:
        The in-memory Optuna study and its finished trials in the order they finished.
    """
    if workers < 1:
        raise ConfigError(f"workers: expected at least 1, got {workers}")
    space = space or table.space
    epochs = table.epochs
    rungs = tuple(r for r in (scheduler.resolved_rungs(epochs) if scheduler is not None else ()) if r < epochs)
    if scheduler is not None and EER not in objectives:
        raise ConfigError(f"scheduler moasha: the objectives must include {EER!r}, got {list(objectives)}")
    cost_names = [(n, d) for n, d in zip(objectives, directions, strict=True) if n != EER]
    sim = TableStudy(table, sampler, directions=directions, references=references, space=space, seed=seed, trials=trials)
    study = sim.study

    clk = WorkerClock()
    ledger = PrefixLedger(epochs) if prefix_reuse else None
    points: dict[int, list[RungPoint]] = {r: [] for r in rungs}  # the study's rung evidence
    out: list[AshaTrial] = []
    started = 0
    exhausted = False

    def schedule_next(r: _Running) -> None:
        if r.next_rung < len(rungs):
            rung = rungs[r.next_rung]
            clk.at(r.at(rung), r.trial.number, rung)
        else:
            clk.at(r.at(epochs), r.trial.number, 0)

    def start(now: float) -> bool:
        nonlocal started, exhausted
        found = sim.next()
        if found is None:
            exhausted = True
            return False
        p, res = found
        costs = tuple((1.0 if d == "minimize" else -1.0) * float(res[n]) for n, d in cost_names)
        sched = p.schedule.to_dict()
        reused = ledger.reusable(sched, now) if ledger is not None else 0
        r = _Running(p.trial, p.label, sched, res, now, cumulative_flops(res, epochs), reused, costs)
        clk.start(p.trial.number, r)
        if ledger is not None:
            ledger.add(p.trial.number, r)
        started += 1
        schedule_next(r)
        return True

    def fill(now: float) -> None:
        while (len(clk.running) < workers and started < trials and not exhausted
               and (flops_budget is None or clk.spent(now) < flops_budget)):
            if not start(now):
                break

    fill(0.0)
    for now, r, rung in clk.events():
        number = r.trial.number
        if rung:  # a rung: record the evidence, then judge (as MoashaScheduler._at_rung)
            assert scheduler is not None
            r.next_rung += 1
            eer = value_at_rung(r.res.get("dev_eer_curve") or [], rung)
            if eer is None:  # no dev EER by then: not judged
                schedule_next(r)
                continue
            rung_values = dict(TRIAL_RUNGS.get(r.trial.user_attrs) or {})
            rung_values[str(rung)] = eer
            TRIAL_RUNGS.set(r.trial, rung_values)
            me = RungPoint(number, r.schedule, eer, r.costs)
            d = decide(me, list(points[rung]), rung=rung, reduction_factor=scheduler.reduction_factor,
                       min_epochs_after_growth=scheduler.min_epochs_after_growth)
            points[rung].append(me)
            if not d.stop:
                schedule_next(r)
                continue
            spent = r.spent_by(rung)
            if ledger is not None:
                ledger.stop(number, rung)
            curves = {"dev_eer": list((r.res.get("dev_eer_curve") or [])[:rung]), "train_flops": r.cum[:rung]}
            TRIAL_PRUNED.set(r.trial, {"scheduler": SCHEDULER_NAME, "rung": rung, "epoch": rung - 1, "reason": d.reason,
                                       "situation": "settled" if d.situation == "settled" else "unsettled",
                                       "kept": list(d.kept_numbers), "curves": curves, "train_flops": r.cum[rung - 1],
                                       "train_flops_saved": r.cum[rung - 1] - spent, "checkpoint": None})
            TRIAL_CURVES.set(r.trial, curves)
            study.tell(r.trial, state=TrialState.PRUNED)
            clk.finish(number, spent)
            out.append(AshaTrial(number, r.label, row_key(r.schedule), "PRUNED", None, rung, spent, r.start, now,
                                 clk.spent(now), d))
        else:
            values = [float(r.res[n]) for n in objectives]
            study.tell(r.trial, values)
            clk.finish(number, r.spent_by(epochs))
            out.append(AshaTrial(number, r.label, row_key(r.schedule), "COMPLETE", values, None, r.spent_by(epochs), r.start,
                                 now, clk.spent(now)))
        fill(now)
    assert not clk.running and math.isfinite(clk.spent_done)
    return study, out
