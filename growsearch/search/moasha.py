"""Growth-aware multi-objective asynchronous successive halving: the rung decision, pure.

No torch, no Ray, no database: numbers and schedule dicts in, a :class:`Decision` out (the
Ray Tune adapter is :mod:`growsearch.search.moasha_tune`). Tests feed it hand-made curves.

**A rung** ``r`` is a number of epochs trained. A trial reaching it is judged with the other
trials of the study that reached it (running, finished or stopped), each a :class:`RungPoint`:
the dev EER after ``r`` epochs and the schedule's final costs (parameters, FLOPs: known from
the schedule before training, see :func:`growsearch.train.dryrun.dry_run`), as losses (a
maximised objective negated by the caller).

**Growth-aware: never stop a trial on evidence that does not depend on its schedule.**

- *Applied prefix.* After ``r`` epochs the events with ``epoch < r`` have been applied (an
  event with ``epoch=e`` applies before epoch ``e`` trains). Two trials of one study with
  the same applied prefix have the same curve up to ``r`` (same data, model, training
  settings and seed), so their EERs at the rung are one piece of evidence, not several: the
  points are merged per prefix (the candidate stands for its own prefix), and a trial is
  never stopped by one that shares its prefix (on a machine where training is not bit-exact,
  their difference would be noise).
- *Situation.* A trial is **settled** at ``r`` when every event of its schedule has been
  applied and the last one at least ``min_epochs_after_growth`` epochs before ``r`` (a
  schedule without events is settled). Settled trials are judged together: their EER at the
  rung reflects their whole schedule. A trial that is not settled (an event still to come, or
  one too recent) is judged only against trials in the same situation: not settled, with the
  same applied prefix. Those share its curve, so such a trial is never stopped: it waits for
  a rung where its schedule has had its effect.

**The rule** (asynchronous, as ASHA's stopping variant: no trial waits for others). Within the
candidate's group, with ``n`` distinct prefixes (the candidate's included): nothing is
decided while ``n < reduction_factor`` (too little evidence). Otherwise the points are
ordered by Pareto rank (non-dominated sorting over EER at the rung and the final costs),
ties within a front by crowding distance (larger first, as NSGA-II and Syne Tune's MOASHA),
then by trial number; the first ``max(1, floor(n / reduction_factor))`` go on. The candidate
stops when it is not among them **and** its EER at the rung is worse than that of a trial
that goes on (so a trial is stopped on training evidence, never on its planned cost alone).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "RungPoint", "applied_prefix", "crowding", "decide", "nondominated_fronts", "rank_order",
           "settled", "situation", "value_at_rung"]

#: The situation of every settled trial (judged together).
SETTLED = "settled"


@dataclass(frozen=True)
class RungPoint:
    """One trial at a rung.

    Attributes:
        number: the trial number (ties end on it; the lowest represents a merged prefix).
        schedule: the trial's schedule as a dict (``GrowthSchedule.to_dict()``: ``events``
            with their ``epoch``).
        eer: its dev EER after the rung's epochs.
        costs: its final costs as losses (minimised), in the study's order.
    """

    number: int
    schedule: Mapping[str, Any]
    eer: float
    costs: tuple[float, ...] = ()

    @property
    def losses(self) -> tuple[float, ...]:
        return (self.eer, *self.costs)


@dataclass(frozen=True)
class Decision:
    """What a rung decided for a trial.

    Attributes:
        stop: stop the trial (it is recorded PRUNED).
        reason: one line saying why (kept, waiting, or stopped).
        situation: :data:`SETTLED` or ``unsettled:<applied prefix>``.
        group: the distinct prefixes judged together (the candidate's included).
        kept: how many of them go on.
        position: the candidate's place in the order (0 = best).
    """

    stop: bool
    reason: str
    situation: str
    group: int = 0
    kept: int = 0
    position: int | None = None
    kept_numbers: tuple[int, ...] = field(default_factory=tuple)


def _events(schedule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [e for e in (schedule.get("events") or ()) if isinstance(e, Mapping)]


def applied_prefix(schedule: Mapping[str, Any], rung: int) -> str:
    """The events applied after ``rung`` epochs (``epoch < rung``) as canonical JSON (the key of
    trials with identical curves up to the rung; the schedule's label and version are not in it)."""
    applied = [dict(e) for e in _events(schedule) if int(e.get("epoch", 0)) < rung]
    applied.sort(key=lambda e: (int(e.get("epoch", 0)), json.dumps(e, sort_keys=True, default=str)))
    return json.dumps(applied, sort_keys=True, separators=(",", ":"), default=str)


def settled(schedule: Mapping[str, Any], rung: int, min_epochs_after_growth: int) -> bool:
    """Every event applied by ``rung`` and the last one at least ``min_epochs_after_growth`` epochs before it."""
    epochs = [int(e.get("epoch", 0)) for e in _events(schedule)]
    if not epochs:
        return True
    return max(epochs) < rung and rung - max(epochs) >= min_epochs_after_growth


def situation(schedule: Mapping[str, Any], rung: int, min_epochs_after_growth: int) -> str:
    """:data:`SETTLED`, or ``unsettled:<applied prefix>`` (see the module docstring)."""
    if settled(schedule, rung, min_epochs_after_growth):
        return SETTLED
    return "unsettled:" + applied_prefix(schedule, rung)


def value_at_rung(curve: Sequence[float | None], rung: int) -> float | None:
    """The dev EER after ``rung`` epochs from a per-epoch curve: the latest value evaluated at
    epoch ``rung - 1`` or before (``eval_every > 1`` leaves gaps); ``None`` when there is none."""
    for v in reversed(list(curve[:rung])):
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def nondominated_fronts(losses: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of ``losses`` by Pareto front (first front first; all minimised)."""
    n = len(losses)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j and _dominates(losses[i], losses[j]):
                beats[i].append(j)
                beaten_by[j] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if beaten_by[i] == 0]
    while current:
        fronts.append(sorted(current))
        nxt = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    nxt.append(j)
        current = nxt
    return fronts


def crowding(losses: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point of one front (boundary points: infinite)."""
    n = len(losses)
    if n <= 2:
        return [math.inf] * n
    dist = [0.0] * n
    for k in range(len(losses[0])):
        order = sorted(range(n), key=lambda i: (losses[i][k], i))
        lo, hi = losses[order[0]][k], losses[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi <= lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:], strict=False):
            dist[i] += (losses[b][k] - losses[a][k]) / (hi - lo)
    return dist


def rank_order(points: Sequence[RungPoint]) -> list[int]:
    """Indices of ``points``, best first: Pareto front, then larger crowding distance, then trial number."""
    losses = [p.losses for p in points]
    order: list[int] = []
    for front in nondominated_fronts(losses):
        cd = crowding([losses[i] for i in front])
        order += [i for _, i in sorted(zip(cd, front, strict=True), key=lambda t: (-t[0], points[t[1]].number))]
    return order


def decide(candidate: RungPoint, others: Sequence[RungPoint], *, rung: int, reduction_factor: float,
           min_epochs_after_growth: int) -> Decision:
    """The rung decision for ``candidate`` against the ``others`` at the same rung (see the module docstring).

    Args:
        candidate: the trial that just reached ``rung``.
        others: every other trial with a value at ``rung`` (any situation: the group is chosen here).
        rung: epochs trained.
        reduction_factor: ``> 1``; the best ``1 / reduction_factor`` go on.
        min_epochs_after_growth: see :func:`settled`.
    """
    where = situation(candidate.schedule, rung, min_epochs_after_growth)
    mine = applied_prefix(candidate.schedule, rung)
    by_prefix: dict[str, RungPoint] = {mine: candidate}
    for p in sorted(others, key=lambda p: p.number):
        if p.number == candidate.number or situation(p.schedule, rung, min_epochs_after_growth) != where:
            continue
        by_prefix.setdefault(applied_prefix(p.schedule, rung), p)  # one point per evidence
    points = list(by_prefix.values())
    n = len(points)
    if where != SETTLED:
        return Decision(False, f"rung {rung}: not settled (an event still to come or fewer than {min_epochs_after_growth} "
                               f"epochs since the last); judged only with its {n - 1} distinct same-prefix peers: kept",
                        where, n, n)
    if n < reduction_factor:
        return Decision(False, f"rung {rung}: {n} distinct schedules so far (fewer than the reduction factor "
                               f"{reduction_factor:g}): kept", where, n, n)
    order = rank_order(points)
    keep = max(1, int(math.floor(n / reduction_factor + 1e-9)))
    kept = [points[i] for i in order[:keep]]
    position = order.index(0)
    kept_numbers = tuple(p.number for p in kept)
    if position < keep:
        return Decision(False, f"rung {rung}: place {position + 1} of {n} distinct schedules (the best {keep} go on): kept",
                        where, n, keep, position, kept_numbers)
    better = [p for p in kept if p.eer < candidate.eer]  # a different prefix by construction
    if not better:
        return Decision(False, f"rung {rung}: place {position + 1} of {n}, outside the best {keep} only by its final costs "
                               "(its dev EER is as good as theirs): kept", where, n, keep, position, kept_numbers)
    best = min(better, key=lambda p: (p.eer, p.number))
    return Decision(True, f"rung {rung}: place {position + 1} of {n} distinct schedules by Pareto rank over dev EER after "
                          f"{rung} epochs and final costs (the best {keep} go on); dev EER {candidate.eer:.4f} vs "
                          f"{best.eer:.4f} of trial {best.number}", where, n, keep, position, kept_numbers)
