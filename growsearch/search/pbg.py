"""Population-based growth: the exploit decision and the explore draw, pure.

No Ray, no database: numbers and schedule dicts in, a :class:`Exploit` or a child schedule
out (the Ray Tune adapter is :mod:`growsearch.search.pbg_tune`, the table simulation
:mod:`growsearch.search.simulate_pbg`). Ray's PBT copies weights and perturbs numbers; it
cannot change a model's shape (ray-project/ray#5788). Here the perturbation *is* a growth
schedule:

**Members and boundaries.** A population of trials trains; at each boundary ``b`` (epochs
trained, the study's ``scheduler.boundaries`` or every ``interval`` epochs) a member that
reached it is judged with every other trial that reached it (running, finished or stopped:
asynchronous, as Ray's PBT with ``synch=False``), each a :class:`~growsearch.search.moasha.RungPoint`.

**What is judged is the model as it stands** after ``b`` epochs: the events with
``epoch < b`` applied so far (:func:`~growsearch.search.moasha.applied_prefix`). Trials with
one applied prefix have one curve up to ``b`` (same data, model, training settings and seed),
so they are one point (the lowest trial number stands for it; the candidate for its own).
A point's costs are those of its applied prefix as a final model (:func:`prefix_schedule`:
the prefix trained to the end with no further event), because a member that is replaced
loses its future events anyway. A prefix whose last event is fewer than
``min_epochs_after_growth`` epochs old is not judged, neither as candidate nor as parent: a
freshly grown model has not shown what it can do.

**Exploit.** With ``n`` distinct settled prefixes (fewer than ``1 / quantile``: no decision),
ordered by Pareto rank over (dev EER after ``b`` epochs, costs) and crowding distance
(:func:`~growsearch.search.moasha.rank_order`), the candidate is replaced when it is among the
last ``m = max(1, floor(n * quantile))`` and one of the first ``m`` has a strictly lower dev
EER (replaced on training evidence, never on cost alone). Its parent is drawn uniformly
(seeded) among those.

**Explore.** The child's schedule is the parent's applied prefix followed by a future drawn
from the search space: a schedule of the space whose events before ``b`` are exactly the
parent's (:func:`draw_child`; a growth event at ``b`` or later, or the shrink of a
plasticity event grown before ``b``). It is an ordinary schedule of the space: it replays
from scratch with ``growsearch train --schedule`` to the same metrics, and with the
shared-prefix cache it starts from the parent's state after ``b`` epochs, bit-identical to
that replay (:mod:`growsearch.train.prefix_cache`).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from growsearch.search.moasha import RungPoint, applied_prefix, rank_order

__all__ = ["Exploit", "child_seed", "draw_child", "exploit", "prefix_schedule", "prefix_settled"]

#: At most this many points of a flat grid are enumerated by :func:`draw_child`; a bigger (or
#: conditional) space is sampled at random instead.
GRID_LIMIT = 20_000
#: Random draws :func:`draw_child` tries on a space it does not enumerate.
RANDOM_TRIES = 2_000


@dataclass(frozen=True)
class Exploit:
    """What a boundary decided for a member.

    Attributes:
        replace: the member is stopped and replaced by a child of ``parent``.
        reason: one line saying why.
        parent: the trial number whose applied prefix the child continues (``replace`` only).
        group: distinct settled prefixes judged together (the candidate's included).
        position: the candidate's place in the order (0 = best), when ordered.
        top: the trial numbers standing for the first ``m`` prefixes.
    """

    replace: bool
    reason: str
    parent: int | None = None
    group: int = 0
    position: int | None = None
    top: tuple[int, ...] = field(default_factory=tuple)


def _events(schedule: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(e) for e in (schedule.get("events") or ()) if isinstance(e, Mapping)]


def prefix_schedule(schedule: Mapping[str, Any], boundary: int) -> dict[str, Any]:
    """The schedule of the events applied after ``boundary`` epochs (``epoch < boundary``), as a dict
    (the model as it stands, trained to the end with no further event)."""
    out = {k: v for k, v in schedule.items() if k not in ("events", "label")}
    out["events"] = [e for e in _events(schedule) if int(e.get("epoch", 0)) < boundary]
    return out


def prefix_settled(schedule: Mapping[str, Any], boundary: int, min_epochs_after_growth: int) -> bool:
    """Whether the last event applied by ``boundary`` is at least ``min_epochs_after_growth`` epochs old
    (a prefix without events is settled)."""
    applied = [int(e.get("epoch", 0)) for e in _events(schedule) if int(e.get("epoch", 0)) < boundary]
    return not applied or boundary - max(applied) >= min_epochs_after_growth


def child_seed(seed: int | None, candidate: int, boundary: int) -> int:
    """The seed of one exploit's draws (parent and child): fixed by the study's seed, the replaced
    trial and the boundary, so a resumed driver draws what the killed one would have."""
    return (int(seed or 0) * 1_000_003 + candidate * 1_009 + boundary) % (2**31 - 1)


def exploit(candidate: RungPoint, others: Sequence[RungPoint], *, boundary: int, quantile: float,
            min_epochs_after_growth: int, rng: random.Random) -> Exploit:
    """The boundary decision for ``candidate`` against ``others`` (see the module docstring).

    Args:
        candidate: the member that just reached ``boundary``; its ``costs`` are its applied
            prefix's (the caller computes them from :func:`prefix_schedule`).
        others: every other trial with a dev EER after ``boundary`` epochs, costs likewise.
        boundary: epochs trained.
        quantile: in ``(0, 0.5]``: the share of prefixes replaced and copied.
        min_epochs_after_growth: see :func:`prefix_settled`.
        rng: draws the parent among the better top prefixes.
    """
    if not prefix_settled(candidate.schedule, boundary, min_epochs_after_growth):
        return Exploit(False, f"boundary {boundary}: grown fewer than {min_epochs_after_growth} epochs ago: not judged yet")
    mine = applied_prefix(candidate.schedule, boundary)
    by_prefix: dict[str, RungPoint] = {mine: candidate}
    for p in sorted(others, key=lambda p: p.number):
        if p.number != candidate.number and prefix_settled(p.schedule, boundary, min_epochs_after_growth):
            by_prefix.setdefault(applied_prefix(p.schedule, boundary), p)
    points = list(by_prefix.values())
    n = len(points)
    need = math.ceil(1.0 / quantile - 1e-9)
    if n < need:
        return Exploit(False, f"boundary {boundary}: {n} distinct models so far (fewer than 1/quantile = {need}): kept", None, n)
    order = rank_order(points)
    m = max(1, int(math.floor(n * quantile + 1e-9)))
    position = order.index(0)
    top = [points[i] for i in order[:m]]
    top_numbers = tuple(p.number for p in top)
    if position < n - m:
        return Exploit(False, f"boundary {boundary}: place {position + 1} of {n} distinct models (the last {m} are "
                              "replaced): kept", None, n, position, top_numbers)
    better = [p for p in top if p.eer < candidate.eer and p is not candidate]
    if not better:
        return Exploit(False, f"boundary {boundary}: place {position + 1} of {n}, behind only on cost (its dev EER is as "
                              "good as the best models'): kept", None, n, position, top_numbers)
    parent = rng.choice(sorted(better, key=lambda p: p.number))
    return Exploit(True, f"boundary {boundary}: place {position + 1} of {n} distinct models by Pareto rank over dev EER "
                         f"after {boundary} epochs and the model's costs (the last {m} are replaced); dev EER "
                         f"{candidate.eer:.4f} vs {parent.eer:.4f} of trial {parent.number}: replaced by a child of "
                         f"trial {parent.number}", parent.number, n, position, top_numbers)


def _grid_points(grid: Mapping[str, Sequence[Any]]) -> int:
    return math.prod(len(v) for v in grid.values())


def draw_child(space: Any, parent_schedule: Mapping[str, Any], boundary: int, *, rng: random.Random,
               taken: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A schedule of ``space`` that continues ``parent_schedule``'s applied prefix at ``boundary``.

    Uniform over the space's distinct schedules whose events before ``boundary`` are exactly
    the parent's and that ``taken`` does not refuse (a schedule the study already has). A space
    whose flat encoding has a finite grid (:meth:`SearchSpace.grid`) of at most :data:`GRID_LIMIT`
    points is enumerated (exact; a conditional space through its flat twin, the parameters
    translated back with :meth:`SearchSpace.to_conditional`); any other space is sampled at
    random, :data:`RANDOM_TRIES` times.

    Args:
        space: the bound :class:`~growsearch.search.space.SearchSpace`.
        parent_schedule: the parent's schedule dict.
        boundary: epochs trained.
        rng: the draw's random source.
        taken: ``schedule dict -> True`` when the study already has it.

    Returns:
        ``(params, schedule dict)`` in the space's encoding, or ``None`` when no untried
        schedule continues the prefix.
    """
    want = applied_prefix(parent_schedule, boundary)
    flat = _flat_twin(space)
    grid = _finite_grid(flat) if flat is not None else None
    if flat is not None and grid is not None:
        seen: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        names = list(grid)
        for combo in itertools.product(*(grid[k] for k in names)):
            params = dict(zip(names, combo, strict=True))
            try:
                if flat is not space:  # a conditional space: its own parameters for the same schedule
                    params = flat.to_conditional(params)
                sched = space.decode(params).to_dict()
            except Exception:  # noqa: BLE001 - a grid point the space repairs away or refuses: not a child
                continue
            key = json.dumps(sched, sort_keys=True, default=str)
            if key in seen or applied_prefix(sched, boundary) != want or taken(sched):
                continue
            seen[key] = (params, sched)
        if not seen:
            return None
        return seen[rng.choice(sorted(seen))]
    return _draw_random(space, want, boundary, rng=rng, taken=taken)


def _flat_twin(space: Any) -> Any:
    """``space`` itself when flat, else the same space in the flat encoding (``None`` when it has none:
    points with different numbers of amounts, forms or inits)."""
    if getattr(space, "encoding", None) == "flat":
        return space
    try:
        twin = space.model_copy(update={"encoding": "flat"})
        twin.grid(sampler="pbg")
    except Exception:  # noqa: BLE001 - no flat twin: drawn at random
        return None
    return twin


def _finite_grid(space: Any) -> dict[str, list[Any]] | None:
    if getattr(space, "encoding", None) != "flat":
        return None
    try:
        grid = space.grid(sampler="pbg")
    except Exception:  # noqa: BLE001 - a continuous lr: not enumerable
        return None
    return grid if _grid_points(grid) <= GRID_LIMIT else None


def _draw_random(space: Any, want: str, boundary: int, *, rng: random.Random,
                 taken: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    import optuna  # only here: the enumerated path needs no Optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng.randrange(2**31 - 1)))
    for _ in range(RANDOM_TRIES):
        trial = study.ask()
        space.define_by_run(trial)
        params = dict(trial.params)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        try:
            sched = space.decode(params).to_dict()
        except Exception:  # noqa: BLE001
            continue
        if applied_prefix(sched, boundary) == want and not taken(sched):
            return params, sched
    return None
