"""The data behind every report: a study's completed trials, objectives and Pareto front.

:func:`load_study_data` reads the study **once** (``study.get_trials(deepcopy=False)``), so
reports stay fast at 10,000 trials; everything else here works on that snapshot with numpy.
The Pareto set is the same as ``study.best_trials`` (COMPLETE trials only, non-dominated
under the study's directions; duplicates of a front point are all on the front), computed
with moocore's vectorised ``is_nondominated`` instead of per-trial Python comparisons.
As in ``study.best_trials``, a constrained study (trials with ``set_constraint`` /
``constraints`` values) has its front among the *feasible* trials (every constraint <= 0).
One difference: trials with an infinite objective value are left out of every report
(Optuna would put ``(inf, 1, 1)`` on the front; it would also make hypervolumes infinite).

Objective names come from ``study.metric_names``; failing that from the study user attr
``objectives`` (``[{name, direction}]``); failing that ``objective_0``, ``objective_1``...
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import moocore
import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from growsearch.errors import ConfigError
from growsearch.search.attrs import (
    OPTUNA_FAIL_REASON,
    TRIAL_CURVES,
    TRIAL_DUPLICATE_OF,
    TRIAL_FAIL_REASON,
    TRIAL_METRICS,
    TRIAL_REFERENCE,
    TRIAL_SCHEDULE,
    TRIAL_SEED,
    study_objectives,
    trial_fail_reason,
)
from growsearch.search.objectives import Objective
from growsearch.vocabulary import COST_OBJECTIVES


@dataclass(frozen=True)
class TrialPoint:
    """A COMPLETE trial as the reports need it.

    Attributes:
        number: Optuna trial number.
        values: objective values, in the study's objective order.
        schedule: the trial's ``schedule`` user attr (GrowthSchedule dict) or ``None``.
        reference: the ``reference`` label (``baseline``, ``paper-dropin``) or ``None``.
        curves: per-epoch curves (``dev_eer``, ``train_loss``, ``params``, ``flops``).
        metrics: the ``metrics`` user attr.
        seed: the ``seed`` user attr.
        params: the trial's sampled parameters.
        attrs_loaded: ``False`` for points read without attributes (see
            :func:`load_study_data`): schedule, curves, metrics and params are then empty.
        feasible: every constraint value <= 0 (``True`` when the trial has none).
    """

    number: int
    values: tuple[float, ...]
    schedule: dict[str, Any] | None
    reference: str | None
    curves: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    attrs_loaded: bool = True
    feasible: bool = True


@dataclass
class StudyData:
    """A snapshot of one study for reporting.

    Attributes:
        name: study name.
        objectives: objectives in value order.
        points: COMPLETE trials with finite values, sorted by trial number.
        on_front: boolean mask over ``points``: Pareto-optimal.
        counts: number of trials per state name (``COMPLETE``, ``FAIL``, ...).
        failed: ``(number, reason)`` for each FAIL trial that was a real failure
            (``fail_reason`` user attr, or Optuna's ``fail_reason`` system attr, or
            ``"(no reason recorded)"``).
        duplicates: ``(number, twin)`` for each proposal recorded FAIL without training
            because trial ``twin`` has the same schedule (``duplicate_of``); not failures.
        user_attrs: the study's user attrs (``config``, ``config_hash``, ``versions``...).
    """

    name: str
    objectives: list[Objective]
    points: list[TrialPoint]
    on_front: np.ndarray
    counts: dict[str, int]
    failed: list[tuple[int, str]]
    user_attrs: dict[str, Any]
    duplicates: list[tuple[int, int]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def front(self) -> list[TrialPoint]:
        """Pareto-optimal points, sorted by the first objective then trial number."""
        pts = [p for p, f in zip(self.points, self.on_front) if f]
        return sorted(pts, key=lambda p: (p.values[0] * self.objectives[0].sign, p.number))

    @property
    def references(self) -> list[TrialPoint]:
        """COMPLETE trials carrying a ``reference`` label."""
        return [p for p in self.points if p.reference]

    def values_array(self, points: list[TrialPoint] | None = None) -> np.ndarray:
        """Objective values ``(n_points, n_objectives)``."""
        pts = self.points if points is None else points
        if not pts:
            return np.zeros((0, len(self.objectives)))
        return np.asarray([p.values for p in pts], dtype=float)

    def flops_warning(self) -> str | None:
        """A warning when the study's FLOPs were counted under different definitions
        (:func:`growsearch.metrics.flops_definition.flops_definitions_warning`; the study's
        ``flops_definition`` attr and the loaded trials' metrics), else None."""
        from growsearch.metrics.flops_definition import flops_definitions_warning

        return flops_definitions_warning(self.user_attrs, [p.metrics for p in self.points if p.attrs_loaded])

    def index(self, name: str) -> int:
        """Position of objective ``name``.

        Raises:
            ConfigError: no such objective (lists the study's objectives).
        """
        if name not in self.names:
            raise ConfigError(f"study {self.name!r} has no objective {name!r}; objectives: {', '.join(self.names)}")
        return self.names.index(name)

    def best(self, name: str) -> TrialPoint | None:
        """The point with the best value of objective ``name`` (lowest number on ties)."""
        if not self.points:
            return None
        i = self.index(name)
        s = self.objectives[i].sign
        return min(self.points, key=lambda p: (s * p.values[i], p.number))


def objectives_of(study: optuna.Study) -> list[Objective]:
    """The study's objectives with names (see module docstring for the fallbacks)."""
    dirs = ["minimize" if d == StudyDirection.MINIMIZE else "maximize" for d in study.directions]
    names = study.metric_names
    if not names or len(names) != len(dirs):
        recorded = study_objectives(study)
        if recorded is not None and len(recorded) == len(dirs):
            names = [o.name for o in recorded]
        else:
            names = [f"objective_{i}" for i in range(len(dirs))]
    return [Objective.recorded(n, d) for n, d in zip(names, dirs)]


def loss_matrix(values: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """Values turned into losses (maximised objectives negated), ``(n, m) -> (n, m)``."""
    signs = np.asarray([o.sign for o in objectives], dtype=float)
    return values * signs if values.size else values.reshape(0, len(objectives))


def pareto_mask(values: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """Non-dominated rows of ``values`` ``(n, m)``: boolean ``(n,)``; O(n log n) in 2-D."""
    if values.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    # keep_weakly: duplicates of a front point are all on the front, as in study.best_trials
    return np.asarray(moocore.is_nondominated(loss_matrix(values, objectives), keep_weakly=True), dtype=bool)


def _point(t: FrozenTrial) -> TrialPoint:
    return TrialPoint(
        number=t.number,
        values=tuple(float(v) for v in (t.values or ())),
        schedule=TRIAL_SCHEDULE.get(t),
        reference=TRIAL_REFERENCE.get(t) or None,
        curves=TRIAL_CURVES.get(t) or {},
        metrics=TRIAL_METRICS.get(t) or {},
        seed=TRIAL_SEED.get(t),
        params=dict(t.params),
        feasible=all(c <= 0.0 for c in t.constraints.values()),
    )


def _fail_reason(t: FrozenTrial) -> str:
    r = trial_fail_reason(t)
    return r.splitlines()[0] if r else "(no reason recorded)"


def load_study_data(study: optuna.Study, *, full: bool = False) -> StudyData:
    """Read ``study`` once and compute its Pareto front.

    On an RDB storage the fast path (:mod:`growsearch.report.fastread`) reads states and
    values of every trial in a few queries and full trials (schedule, curves, metrics) only
    for Pareto members and reference trials; other points then have ``attrs_loaded=False``.
    ``full=True`` (or a non-RDB storage, or an unexpected schema) reads every trial with
    ``study.get_trials(deepcopy=False)``.
    """
    if not full:
        from growsearch.report.fastread import rdb_of

        rdb = rdb_of(study)
        if rdb is not None:
            import sqlalchemy as sa

            try:
                return _load_fast(study, rdb)
            except sa.exc.SQLAlchemyError:
                pass
    return _load_full(study)


def _load_full(study: optuna.Study) -> StudyData:
    objectives = objectives_of(study)
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    m = len(objectives)
    points = [
        _point(t)
        for t in trials
        if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == m and all(math.isfinite(v) for v in t.values)
    ]
    points.sort(key=lambda p: p.number)
    fails = [t for t in trials if t.state == TrialState.FAIL]
    duplicates = [(t.number, twin) for t in fails if (twin := TRIAL_DUPLICATE_OF.get(t)) is not None]
    failed = [(t.number, _fail_reason(t)) for t in fails if TRIAL_DUPLICATE_OF.get(t) is None]
    constrained = any(len(t.constraints) > 0 for t in trials)
    return _finish(study, objectives, points, counts, failed, constrained, duplicates)


def front_mask(values: np.ndarray, objectives: list[Objective], feasible: np.ndarray, constrained: bool) -> np.ndarray:
    """Pareto mask ``(n,)``; in a constrained study only among the feasible rows."""
    if not constrained:
        return pareto_mask(values, objectives)
    out = np.zeros(values.shape[0], dtype=bool)
    idx = np.flatnonzero(feasible)
    out[idx] = pareto_mask(values[idx], objectives)
    return out


def _finish(
    study: optuna.Study,
    objectives: list[Objective],
    points: list[TrialPoint],
    counts: Counter[str],
    failed: list[tuple[int, str]],
    constrained: bool,
    duplicates: list[tuple[int, int]],
) -> StudyData:
    data = StudyData(
        name=study.study_name,
        objectives=objectives,
        points=points,
        on_front=np.zeros(len(points), dtype=bool),
        counts={s.name: counts.get(s.name, 0) for s in TrialState},
        failed=sorted(failed),
        user_attrs=dict(study.user_attrs),
        duplicates=sorted(duplicates),
    )
    data.on_front = front_mask(data.values_array(), objectives, np.asarray([p.feasible for p in points], dtype=bool), constrained)
    return data


def _load_fast(study: optuna.Study, rdb: Any) -> StudyData:
    from growsearch.report.fastread import read_rows
    from growsearch.search.optuna_private import study_id_of

    objectives = objectives_of(study)
    rows = read_rows(rdb, study_id_of(study), len(objectives), user_keys=(TRIAL_REFERENCE.key, TRIAL_FAIL_REASON.key, TRIAL_DUPLICATE_OF.key),
                     system_keys=(OPTUNA_FAIL_REASON,))
    counts = Counter(rows.states)
    complete = np.asarray([s == "COMPLETE" for s in rows.states], dtype=bool)
    ok = complete & np.all(np.isfinite(rows.values), axis=1) if rows.values.size else complete
    refs = rows.user_attr[TRIAL_REFERENCE.key]
    idx = np.flatnonzero(ok)
    cons = rows.constraints
    points = [
        TrialPoint(number=int(rows.numbers[i]), values=tuple(float(v) for v in rows.values[i]), schedule=None,
                   reference=str(refs[int(rows.trial_ids[i])]) if refs.get(int(rows.trial_ids[i])) else None, attrs_loaded=False,
                   feasible=all(c <= 0.0 for c in cons.get(int(rows.trial_ids[i]), ())))
        for i in idx
    ]
    ids = [int(rows.trial_ids[i]) for i in idx]
    constrained = bool(cons)
    on_front = front_mask(np.asarray([p.values for p in points]).reshape(-1, len(objectives)), objectives,
                          np.asarray([p.feasible for p in points], dtype=bool), constrained)
    for k, p in enumerate(points):
        if on_front[k] or p.reference:
            points[k] = _point(rdb.get_trial(ids[k]))
    failed = []
    duplicates = []
    for i, s in enumerate(rows.states):
        if s == "FAIL":
            tid = int(rows.trial_ids[i])
            twin = TRIAL_DUPLICATE_OF.get({k: col[tid] for k, col in rows.user_attr.items() if tid in col})
            if twin is not None:
                duplicates.append((int(rows.numbers[i]), twin))
                continue
            r = rows.user_attr[TRIAL_FAIL_REASON.key].get(tid) or rows.system_attr[OPTUNA_FAIL_REASON].get(tid)
            failed.append((int(rows.numbers[i]), str(r).splitlines()[0] if r else "(no reason recorded)"))
    return _finish(study, objectives, points, counts, failed, constrained, duplicates)



# ---- table / JSON / CSV ------------------------------------------------------------------
def schedule_summary(schedule: dict[str, Any] | None) -> str:
    """``+64 gru2@3 (inplace, random); -all grown gru2@6 (appended)`` or ``(no growth)``."""
    if not schedule or not schedule.get("events"):
        return "(no growth)"
    from growsearch.schedule import GrowthSchedule

    try:
        return "; ".join(e.describe() for e in GrowthSchedule.from_dict(schedule).events)
    except Exception:  # noqa: BLE001 - a report must still show a schedule this version cannot parse
        return str(schedule.get("events"))


def member_record(p: TrialPoint, objectives: list[Objective]) -> dict[str, Any]:
    """One front member as JSON-ready data: ``number``, ``values`` (name -> value),
    ``schedule``, ``reference`` and ``seed``."""
    return {
        "number": p.number,
        "values": {o.name: v for o, v in zip(objectives, p.values)},
        "schedule": p.schedule,
        "reference": p.reference,
        "seed": p.seed,
    }


def front_records(data: StudyData) -> list[dict[str, Any]]:
    """The Pareto set as a list of :func:`member_record` dicts."""
    return [member_record(p, data.objectives) for p in data.front]


def _fmt(name: str, v: float) -> str:
    if name in COST_OBJECTIVES or (abs(v) >= 1e4 and float(v).is_integer()):
        return f"{v:,.0f}"
    return f"{v:.6g}"


def front_table(data: StudyData) -> str:
    """A plain-text table of the Pareto set (one row per member)."""
    head = ["trial", *data.names, "reference", "schedule"]
    rows = [
        [str(p.number), *(_fmt(n, v) for n, v in zip(data.names, p.values)), p.reference or "", schedule_summary(p.schedule)]
        for p in data.front
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    widths[-1] = 0  # last column is not padded
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def front_csv(data: StudyData) -> str:
    """The Pareto set as CSV: ``number, <objectives>..., reference, schedule`` (schedule as JSON)."""
    import json

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", *data.names, "reference", "schedule"])
    for p in data.front:
        w.writerow([p.number, *(repr(v) for v in p.values), p.reference or "", json.dumps(p.schedule, sort_keys=True) if p.schedule else ""])
    return buf.getvalue()
