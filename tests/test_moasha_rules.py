"""The growth-aware MOASHA rung decision on hand-made curves (pure: no torch, no Ray)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from growsearch.search.moasha import (
    SETTLED,
    RungPoint,
    applied_prefix,
    crowding,
    decide,
    nondominated_fronts,
    rank_order,
    settled,
    situation,
    value_at_rung,
)
from growsearch.search.schedulers import MoashaConfig, NoScheduler, parse_scheduler
from growsearch.vocabulary import SCHEDULERS


def sched(*events: tuple[str, int, int]) -> dict[str, Any]:
    """A schedule dict as ``GrowthSchedule.to_dict()`` writes it: ``(point, epoch, neurons)`` events."""
    return {"version": 1, "events": [{"point": p, "epoch": e, "action": "grow", "neurons": n, "init": "random"}
                                     for p, e, n in events]}


BASE = sched()


def pt(number: int, schedule: dict[str, Any], eer: float, params: float = 100.0) -> RungPoint:
    return RungPoint(number=number, schedule=schedule, eer=eer, costs=(params,))


def test_applied_prefix_and_situation() -> None:
    s = sched(("gru2", 1, 8), ("gru1", 3, 4))
    assert applied_prefix(s, 1) == applied_prefix(BASE, 1) == "[]"  # nothing applied before epoch 1 trains
    assert applied_prefix(s, 2) == applied_prefix(sched(("gru2", 1, 8), ("gru4", 5, 2)), 2)
    assert applied_prefix(s, 4) != applied_prefix(s, 2)
    assert settled(BASE, 1, 1) and situation(BASE, 1, 1) == SETTLED
    assert not settled(s, 3, 0)  # gru1 grows before epoch 3 trains: applied only after rung 3
    assert not settled(s, 4, 2) and settled(s, 5, 2) and settled(s, 4, 1)
    assert situation(s, 2, 1).startswith("unsettled:")
    # the label does not split prefixes
    assert applied_prefix({**s, "label": "a"}, 2) == applied_prefix({**s, "label": "b"}, 2)


def test_value_at_rung_takes_the_latest_evaluated_epoch() -> None:
    assert value_at_rung([0.5, 0.4, 0.3], 2) == 0.4
    assert value_at_rung([None, 0.4, None, 0.2], 3) == 0.4  # eval_every 2: epoch 2 has no value
    assert value_at_rung([None, None], 2) is None
    assert value_at_rung([0.5, float("nan")], 2) == 0.5
    assert value_at_rung([0.5], 3) == 0.5


def test_fronts_and_crowding() -> None:
    losses = [(0.1, 3.0), (0.2, 2.0), (0.3, 1.0), (0.3, 3.0), (0.4, 4.0)]
    assert nondominated_fronts(losses) == [[0, 1, 2], [3], [4]]
    cd = crowding([losses[i] for i in (0, 1, 2)])
    assert math.isinf(cd[0]) and math.isinf(cd[2]) and cd[1] == pytest.approx(2.0)
    pts = [pt(i, sched(("gru2", 1, 4 * (i + 1))), e, p) for i, (e, p) in enumerate(losses)]
    assert rank_order(pts) == [0, 2, 1, 3, 4]  # boundaries of the first front, then its middle


def test_settled_trials_halve_by_pareto_rank_on_evidence() -> None:
    """Nine settled schedules at rung 2, reduction factor 3: the best 3 by Pareto rank go on; a
    dominated one is stopped, naming a better kept trial."""
    others = [pt(i, sched(("gru2", 0, 4 * (i + 1))), eer=0.10 + 0.02 * i, params=100 + i) for i in range(8)]
    worst = pt(20, sched(("gru2", 0, 64)), eer=0.40, params=200)
    d = decide(worst, others, rung=2, reduction_factor=3, min_epochs_after_growth=1)
    assert d.stop and d.group == 9 and d.kept == 3 and d.situation == SETTLED
    assert "trial 0" in d.reason and "0.4000" in d.reason
    best = pt(21, sched(("gru2", 0, 68)), eer=0.05, params=50)
    assert not decide(best, others, rung=2, reduction_factor=3, min_epochs_after_growth=1).stop


def test_too_little_evidence_keeps_everyone() -> None:
    others = [pt(1, BASE, 0.1)]
    d = decide(pt(2, sched(("gru2", 0, 4)), 0.5, 500), others, rung=2, reduction_factor=3, min_epochs_after_growth=1)
    assert not d.stop and d.group == 2


def test_identical_prefixes_are_one_piece_of_evidence() -> None:
    """Copies of one schedule (reruns, or schedules that differ only after the rung) count once
    and never stop each other, even when their values differ (non-bit-exact hardware)."""
    s = sched(("gru2", 0, 8))
    copies = [pt(i, s, eer=0.10 + 0.01 * i) for i in range(6)]
    d = decide(pt(9, s, eer=0.30), copies, rung=2, reduction_factor=3, min_epochs_after_growth=1)
    assert not d.stop and d.group == 1
    # the same with two other distinct schedules: only 3 distinct prefixes, candidate best
    d = decide(pt(9, s, eer=0.05), [*copies, pt(20, BASE, 0.2), pt(21, sched(("gru1", 0, 4)), 0.3)],
               rung=2, reduction_factor=3, min_epochs_after_growth=1)
    assert d.group == 3 and not d.stop


def test_late_growth_is_judged_only_with_its_own_prefix() -> None:
    """A trial whose growth comes after the rung is not settled: it is not stopped by better
    settled trials (its curve is still the baseline's), nor by its same-prefix peers."""
    late = sched(("gru2", 3, 32))
    settled_good = [pt(i, sched(("gru1", 0, 4 * (i + 1))), eer=0.05, params=10) for i in range(9)]
    peers = [pt(30 + i, sched(("gru2", 3 + i % 2, 4 * (i + 1))), eer=0.50) for i in range(5)]  # same empty prefix
    d = decide(pt(50, late, eer=0.50, params=1000), [*settled_good, *peers], rung=2, reduction_factor=2,
               min_epochs_after_growth=1)
    assert not d.stop and d.situation.startswith("unsettled:") and d.group == 1


def test_recent_growth_waits_for_min_epochs_after_growth() -> None:
    grown = sched(("gru2", 1, 32))
    good = [pt(i, sched(("gru1", 0, 4 * (i + 1))), eer=0.05, params=10) for i in range(9)]
    cand = pt(50, grown, eer=0.60, params=1000)
    assert not decide(cand, good, rung=2, reduction_factor=3, min_epochs_after_growth=2).stop  # grown 1 epoch ago
    assert decide(cand, good, rung=3, reduction_factor=3, min_epochs_after_growth=2).stop  # now settled: judged


def test_never_stopped_on_final_cost_alone() -> None:
    """Outside the kept fraction only because its planned model is bigger (equal EER): kept."""
    others = [pt(i, sched(("gru1", 0, 4 * (i + 1))), eer=0.10, params=10 + i) for i in range(8)]
    d = decide(pt(40, sched(("gru2", 0, 32)), eer=0.10, params=1000), others, rung=2, reduction_factor=3,
               min_epochs_after_growth=0)
    assert not d.stop and d.position is not None and d.position >= d.kept and "final costs" in d.reason


def test_ties_broken_by_crowding_then_number() -> None:
    """Four mutually non-dominated schedules, two to keep: the two extremes (infinite crowding) go on."""
    pts = [pt(0, sched(("a", 0, 4)), 0.10, 400), pt(1, sched(("a", 0, 8)), 0.20, 300),
           pt(2, sched(("a", 0, 12)), 0.30, 200), pt(3, sched(("a", 0, 16)), 0.40, 100)]
    d = decide(pts[1], [pts[0], pts[2], pts[3]], rung=1, reduction_factor=2, min_epochs_after_growth=0)
    assert d.kept_numbers == (0, 3) and d.stop
    d = decide(pts[3], pts[:3], rung=1, reduction_factor=2, min_epochs_after_growth=0)
    assert not d.stop and d.position is not None and d.position < 2


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_name_is_accepted(name: str) -> None:
    assert parse_scheduler({"name": name}, "s.yaml", epochs=8).name == name
    assert parse_scheduler(name, "s.yaml", epochs=8).name == name


def test_rungs_from_grace_stop_before_the_end() -> None:
    assert MoashaConfig().resolved_rungs(8) == (1, 3)  # grace 1, reduction factor 3
    assert MoashaConfig(grace=2, reduction_factor=2).resolved_rungs(9) == (2, 4, 8)
    assert MoashaConfig(rungs=(2, 5)).resolved_rungs(9) == (2, 5)
    assert isinstance(parse_scheduler(None, "s.yaml", epochs=3), NoScheduler)


def test_the_decision_module_is_pure() -> None:
    """The rung decision and the settings import neither torch nor Ray."""
    code = ("import sys, growsearch.search.moasha, growsearch.search.schedulers; "
            "print(sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip() == "[]", out.stdout
