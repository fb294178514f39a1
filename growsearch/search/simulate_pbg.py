"""Simulated population-based growth (PBG) on a GrowBench table.

What a live study with ``scheduler: {name: pbg, ...}`` does (:mod:`growsearch.search.pbg`,
the spec), run against a table in seconds, with :mod:`growsearch.search.simulate_asha`'s
workers and clock (issue 14, items 3-4):

- **Members.** The first ``population`` trials of the study (the enqueued references
  included) are proposed by the study's sampler through the live propose step
  (:class:`~growsearch.search.simulate.TableStudy`). After them the sampler is asked for
  nothing more: a freed worker takes a WAITING child if there is one, else stays idle, and
  the run ends when nothing runs.
- **Boundaries.** At each boundary ``b`` (:meth:`PbgConfig.resolved_boundaries`) a running
  trial records its dev EER after ``b`` epochs (:func:`~growsearch.search.moasha.value_at_rung`
  of the table's curve) in its ``rungs`` attr and is judged with :func:`pbg.exploit` against
  every other trial that reached ``b`` (running, finished or stopped). A point's costs are
  those of its applied prefix (:func:`pbg.prefix_schedule`) as a final model: the table's
  row of the prefix schedule; a trial whose prefix row the table lacks is neither judged nor
  evidence there. A child is never judged at its birth boundary or before.
- **Exploit and explore.** The draws are seeded with
  ``random.Random(pbg.child_seed(sampler_seed, member, b))``: first the parent
  (:func:`pbg.exploit`), then, continuing the same generator, the child
  (:func:`pbg.draw_child`; a schedule is *taken* when a trial of the study other than a
  FAIL has it, or when the table lacks its row: the table is the only world a simulated
  child can train in). The member is kept when no child is drawn, or when the trial budget
  has no room for one (started trials, PRUNED included, plus waiting children), as
  :class:`~growsearch.search.pbg_tune.PbgScheduler` does.
- **Replacement.** The member is told PRUNED with a ``pruned`` attr as the live scheduler
  writes it (``scheduler: pbg``, ``rung``, ``epoch``, ``reason``, partial ``curves``,
  ``train_flops`` of the schedule up to the boundary, ``train_flops_saved`` the part a child
  inherited, so that spent = the difference as the searcher counts it, ``parent``, and ``child``: its ``params``,
  ``schedule`` and ``lineage``); the child is enqueued with its parameters and the
  ``lineage`` attr ``{scheduler, parent, boundary, replaces, generation}``. A freed worker
  takes the oldest WAITING child (asked through the same propose step) before the sampler
  proposes a member, so the child starts at once on the replaced member's worker, unless the
  FLOPs budget is spent (then it waits, as live: the searcher asks nothing more).
- **A child's cost.** Its row is the child schedule's (same training seed); it continues
  the parent's state after ``b`` epochs (the shared-prefix cache), so it costs only the
  training FLOPs after ``b`` (``cum[-1] - cum[b - 1]``, or up to the boundary that replaces
  it in turn), its clock starting when it is born.

Budgets as in :func:`~growsearch.search.simulate_asha.simulate_asha`: ``trials`` started
trials, and no trial starts once the training FLOPs spent reach ``flops_budget``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from growsearch.errors import ConfigError
from growsearch.search import pbg
from growsearch.search.attrs import TRIAL_CURVES, TRIAL_LINEAGE, TRIAL_PRUNED, TRIAL_RUNGS
from growsearch.search.moasha import RungPoint, value_at_rung
from growsearch.search.schedulers import PbgConfig
from growsearch.search.simulate import Table, TableStudy, row_key
from growsearch.search.simulate_asha import AshaTrial
from growsearch.search.simulate_clock import PrefixLedger, SimRun, WorkerClock, cumulative_flops
from growsearch.search.space import SearchSpace
from growsearch.vocabulary import EER, Direction

__all__ = ["PbgTrial", "simulate_pbg", "simulate_pbg_study"]

#: The scheduler name written in the ``pruned`` and ``lineage`` attrs.
SCHEDULER_NAME = "pbg"


@dataclass(frozen=True)
class PbgTrial(AshaTrial):
    """One finished simulated PBG trial (:class:`AshaTrial`; ``rung`` is the boundary it was
    replaced at, ``spent`` counts only the FLOPs after its birth boundary).

    Attributes:
        birth: the boundary a child was born at (``None``: a member).
        parent: a child's parent trial number.
        exploit: the decision that replaced it (PRUNED), else ``None``.
    """

    birth: int | None = None
    parent: int | None = None
    exploit: pbg.Exploit | None = None


@dataclass
class _Running(SimRun):
    birth: int = 0  # 0: a member; else the boundary it was born at
    parent: int | None = None
    next_b: int = 0  # index into the boundaries still to come


def _result(table: Table, schedule: dict[str, Any], seed: str) -> dict[str, Any] | None:
    row = table.rows.get(row_key(schedule))
    return None if row is None else row["seeds"].get(str(seed))


def simulate_pbg(table: Table, sampler: optuna.samplers.BaseSampler, *, objectives: Sequence[str],
                 directions: Sequence[Direction], trials: int, seed: str, workers: int = 2, config: PbgConfig,
                 flops_budget: float | None = None, references: Sequence[str] = ("baseline",),
                 sampler_seed: int | None = None, space: SearchSpace | None = None,
                 prefix_reuse: bool = False) -> list[AshaTrial]:
    """Run a simulated PBG study (:func:`simulate_pbg_study` without the study)."""
    return list(simulate_pbg_study(table, sampler, objectives=objectives, directions=directions, trials=trials,
                                   seed=seed, workers=workers, config=config, flops_budget=flops_budget,
                                   references=references, sampler_seed=sampler_seed, space=space,
                                   prefix_reuse=prefix_reuse)[1])


def simulate_pbg_study(table: Table, sampler: optuna.samplers.BaseSampler, *, objectives: Sequence[str],
                       directions: Sequence[Direction], trials: int, seed: str, workers: int = 2, config: PbgConfig,
                       flops_budget: float | None = None, references: Sequence[str] = ("baseline",),
                       sampler_seed: int | None = None, space: SearchSpace | None = None,
                       prefix_reuse: bool = False) -> tuple[optuna.Study, list[PbgTrial]]:
    """Run a simulated PBG study with ``workers`` asynchronous workers (see the module docstring).

    Args:
        table: the GrowBench table.
        sampler: the study's sampler (``runner.sampler_for``): proposes the members.
        objectives: metric names in the study's order, ``dev_eer`` among them; ``directions`` theirs.
        trials: the trial budget: trials started, COMPLETE or PRUNED (references and children included).
        seed: the table's training seed whose results the trials see.
        workers: trials run at once.
        config: the PBG settings (``population`` members, boundaries, quantile, ...).
        flops_budget: no trial starts once the training FLOPs spent reach this.
        references: labels of table rows enqueued first (members).
        sampler_seed: the study's sampler seed (seeds every exploit's draws).
        space: the space to propose and draw children from (default: the table's).
        prefix_reuse: a trial starts from the deepest state of its schedule another trial has
            trained by then, when deeper than its birth boundary
            (:class:`~growsearch.search.simulate_clock.PrefixLedger`).

    Returns:
        The in-memory Optuna study and its finished trials in the order they finished.
    """
    if workers < 1:
        raise ConfigError(f"workers: expected at least 1, got {workers}")
    if EER not in objectives:
        raise ConfigError(f"scheduler pbg: the objectives must include {EER!r}, got {list(objectives)}")
    space = space or table.space
    epochs = table.epochs
    bounds = tuple(b for b in config.resolved_boundaries(epochs) if b < epochs)
    cost_names = [(n, d) for n, d in zip(objectives, directions, strict=True) if n != EER]
    sim = TableStudy(table, sampler, directions=directions, references=references, space=space, seed=seed, trials=trials)
    study = sim.study

    clk = WorkerClock()
    ledger = PrefixLedger(epochs) if prefix_reuse else None
    schedules: dict[int, dict[str, Any]] = {}  # every started trial's schedule
    generation: dict[int, int] = {}
    waiting: list[tuple[int, int, int]] = []  # enqueued children, oldest first: (birth boundary, parent, generation)
    taken_keys: set[str] = set()
    points: dict[int, list[RungPoint]] = {b: [] for b in bounds}
    out: list[PbgTrial] = []
    started = members = 0
    exhausted = False

    def push(r: _Running) -> None:
        while r.next_b < len(bounds) and bounds[r.next_b] <= r.birth:
            r.next_b += 1
        b = bounds[r.next_b] if r.next_b < len(bounds) else 0
        clk.at(r.at(b or epochs), r.trial.number, b)

    def run(now: float) -> bool:
        """Start the oldest WAITING child, else a member proposed by the sampler."""
        nonlocal started, members, exhausted
        birth, parent, gen = waiting.pop(0) if waiting else (0, None, 0)
        found = sim.next()
        if found is None:
            assert not birth, "an enqueued child is in the table and not a twin"
            exhausted = True
            return False
        p, res = found
        assert bool(birth) == (TRIAL_LINEAGE.get(p.trial.user_attrs) is not None), "a child is the WAITING trial"
        sched = p.schedule.to_dict()
        reused = max(birth, ledger.reusable(sched, now)) if ledger is not None else birth
        r = _Running(p.trial, p.label, sched, res, now, cumulative_flops(res, epochs), reused, birth, parent)
        clk.start(p.trial.number, r)
        if ledger is not None:
            ledger.add(p.trial.number, r)
        generation[p.trial.number] = gen
        schedules[p.trial.number] = r.schedule
        taken_keys.add(row_key(r.schedule))
        started += 1
        members += 0 if birth else 1
        push(r)
        return True

    def can_start(now: float) -> bool:
        return started < trials and (flops_budget is None or clk.spent(now) < flops_budget)

    def prefix_costs(schedule: dict[str, Any], b: int) -> tuple[float, ...] | None:
        res = _result(table, pbg.prefix_schedule(schedule, b), seed)
        if res is None:
            return None
        return tuple((1.0 if d == "minimize" else -1.0) * float(res[n]) for n, d in cost_names)

    def taken(sched: dict[str, Any]) -> bool:
        return row_key(sched) in taken_keys or _result(table, sched, seed) is None

    def finish(r: _Running, now: float, spent: float, state: str, values: list[float] | None = None,
               b: int | None = None, ex: pbg.Exploit | None = None) -> None:
        clk.finish(r.trial.number, spent)
        out.append(PbgTrial(r.trial.number, r.label, row_key(r.schedule), state, values, b, spent, r.start, now,
                            clk.spent(now), None, r.birth or None, r.parent, ex))

    def boundary(r: _Running, b: int, now: float) -> None:
        r.next_b += 1
        eer = value_at_rung(r.res.get("dev_eer_curve") or [], b)
        costs = prefix_costs(r.schedule, b)
        if eer is None or costs is None:  # nothing to judge it on: it goes on
            push(r)
            return
        number = r.trial.number
        TRIAL_RUNGS.set(r.trial, {**(TRIAL_RUNGS.get(r.trial.user_attrs) or {}), str(b): eer})
        me = RungPoint(number, r.schedule, eer, costs)
        rng = random.Random(pbg.child_seed(sampler_seed, number, b))
        ex = pbg.exploit(me, list(points[b]), boundary=b, quantile=config.quantile,
                         min_epochs_after_growth=config.min_epochs_after_growth, rng=rng)
        points[b].append(me)
        child = None
        if ex.replace and ex.parent is not None and started + len(waiting) < trials:  # room for a child
            child = pbg.draw_child(space, schedules[ex.parent], b, rng=rng, taken=taken)
        if child is None:
            push(r)
            return
        assert ex.parent is not None
        params, sched = child
        taken_keys.add(row_key(sched))
        gen = generation[ex.parent] + 1
        lineage = {"scheduler": SCHEDULER_NAME, "parent": ex.parent, "boundary": b, "replaces": number, "generation": gen}
        spent = r.spent_by(b)
        if ledger is not None:
            ledger.stop(number, b)
        curves = {"dev_eer": list((r.res.get("dev_eer_curve") or [])[:b]), "train_flops": r.cum[:b]}
        TRIAL_PRUNED.set(r.trial, {"scheduler": SCHEDULER_NAME, "rung": b, "epoch": b - 1, "reason": ex.reason,
                                   "curves": curves, "train_flops": r.cum[b - 1], "train_flops_saved": r.cum[b - 1] - spent,
                                   "checkpoint": None, "parent": ex.parent,
                                   "child": {"params": params, "schedule": sched, "lineage": lineage}})
        TRIAL_CURVES.set(r.trial, curves)
        study.tell(r.trial, state=TrialState.PRUNED)
        study.enqueue_trial(params, user_attrs={TRIAL_LINEAGE.key: lineage}, skip_if_exists=False)
        waiting.append((b, ex.parent, gen))
        finish(r, now, spent, "PRUNED", None, b, ex)  # the worker is free for the child

    def fill(now: float) -> None:
        while len(clk.running) < workers and can_start(now) and (waiting or (members < config.population and not exhausted)):
            if not run(now):
                break

    fill(0.0)
    for now, r, b in clk.events():
        if b:
            boundary(r, b, now)
        else:
            values = [float(r.res[n]) for n in objectives]
            study.tell(r.trial, values)
            finish(r, now, r.spent_by(epochs), "COMPLETE", values)
        fill(now)
    assert not clk.running and math.isfinite(clk.spent_done)
    return study, out
