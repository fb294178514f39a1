"""Population-based growth's exploit decision and explore draw (growsearch.search.pbg), pure:
hand-made rung points, and children drawn from GrowBench's own space (no torch, no Ray)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from growsearch.search import pbg
from growsearch.search.moasha import RungPoint, applied_prefix
from growsearch.search.simulate import row_key
from growsearch.search.space import load_space, parse_space

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "growbench.yaml"
EPOCHS = 6
Q = 0.25  # 1 / quantile = 4 distinct prefixes needed; the last 1 of 4 is replaced


def sched(*events: tuple[str, int, int]) -> dict[str, Any]:
    """A schedule dict as ``GrowthSchedule.to_dict()`` writes it: ``(point, epoch, neurons)`` grow events."""
    return {"version": 1, "events": [{"point": p, "epoch": e, "action": "grow", "neurons": n, "init": "random"}
                                     for p, e, n in events]}


def pt(number: int, schedule: dict[str, Any], eer: float, cost: float = 100.0) -> RungPoint:
    return RungPoint(number=number, schedule=schedule, eer=eer, costs=(cost,))


A, B, C, D, E = (sched((p, 1, 4)) for p in ("gru1", "gru2", "gru3", "gru4", "gru5"))


def decide(candidate: RungPoint, others: list[RungPoint], *, boundary: int = 3, quantile: float = Q,
           min_epochs_after_growth: int = 1, seed: int = 0) -> pbg.Exploit:
    return pbg.exploit(candidate, others, boundary=boundary, quantile=quantile,
                       min_epochs_after_growth=min_epochs_after_growth, rng=random.Random(seed))


def test_fewer_than_one_over_quantile_distinct_prefixes_keep_the_member() -> None:
    # 5 trials, 3 distinct prefixes (two share A's, one B's): no decision, however bad the candidate
    ex = decide(pt(9, C, 0.9, 1e9), [pt(1, A, 0.1), pt(2, A, 0.1), pt(3, B, 0.2), pt(4, B, 0.2)])
    assert not ex.replace and ex.group == 3 and ex.parent is None and "fewer than 1/quantile = 4" in ex.reason


def test_the_worst_prefix_is_replaced_by_a_child_of_a_better_top_prefix() -> None:
    others = [pt(1, A, 0.10), pt(2, B, 0.20), pt(3, C, 0.30), pt(4, D, 0.35), pt(5, E, 0.38),
              pt(6, sched(("gru1", 1, 8)), 0.39), pt(7, sched(("gru2", 1, 8)), 0.395)]
    ex = decide(pt(9, sched(("gru3", 1, 2)), 0.5, 200.0), others)  # worse on dev EER and cost: last of 8
    assert ex.replace and ex.group == 8 and ex.position == 7
    assert len(ex.top) == 2 and ex.top == (1, 2)  # m = floor(8 * 0.25) = 2: the two best
    assert ex.parent in ex.top and ex.parent in (1, 2)
    assert "replaced by a child of trial" in ex.reason
    # the best one is never replaced
    assert not decide(pt(10, sched(("gru4", 1, 2)), 0.05, 50.0), others).replace


def test_behind_only_on_cost_is_kept() -> None:
    # every other prefix dominates the candidate, but none has a strictly lower dev EER
    ex = decide(pt(9, D, 0.10, 500.0), [pt(1, A, 0.10, 100.0), pt(2, B, 0.10, 200.0), pt(3, C, 0.10, 300.0)])
    assert not ex.replace and ex.position == 3 and "behind only on cost" in ex.reason


def test_trials_sharing_a_prefix_are_one_point_and_never_replace_each_other() -> None:
    late = sched(("gru1", 1, 4), ("gru2", 4, 4))  # A's prefix at boundary 3: the same model so far
    assert applied_prefix(late, 3) == applied_prefix(A, 3)
    # the candidate shares its prefix with trial 1 (which would be the best): 1 is merged into it, so
    # only 3 distinct prefixes remain: no decision
    ex = decide(pt(9, late, 0.9), [pt(1, A, 0.05), pt(2, B, 0.2), pt(3, C, 0.3)])
    assert not ex.replace and ex.group == 3
    # with a fourth prefix the candidate is last, and its parent is never trial 1 (its own prefix)
    others = [pt(1, A, 0.05), pt(2, B, 0.2), pt(3, C, 0.3), pt(4, D, 0.4)]
    for seed in range(20):
        ex = decide(pt(9, late, 0.9, 1e9), others, quantile=0.5, seed=seed)
        assert ex.group == 4 and ex.replace and ex.top == (2, 3) and ex.parent in (2, 3)  # m = 2 of 4
    # among the others, a shared prefix counts once (the lowest number stands for it)
    ex = decide(pt(9, E, 0.9, 1e9), [pt(1, A, 0.1), pt(5, A, 0.05), pt(2, B, 0.2), pt(3, C, 0.3)])
    assert ex.group == 4 and ex.replace and ex.parent == 1


def test_an_unsettled_prefix_is_neither_judged_nor_a_parent() -> None:
    fresh = sched(("gru4", 2, 4))  # grown before epoch 3: 1 epoch old at boundary 3
    ex = decide(pt(9, fresh, 0.9, 1e9), [pt(1, A, 0.1), pt(2, B, 0.2), pt(3, C, 0.3), pt(4, D, 0.4)],
                min_epochs_after_growth=2)
    assert not ex.replace and ex.group == 0 and "not judged yet" in ex.reason
    # the same model as the best other: left out of the group, never the parent
    others = [pt(1, fresh, 0.01, 1.0), pt(2, A, 0.1), pt(3, B, 0.2), pt(4, C, 0.3)]
    ex = decide(pt(9, D, 0.9, 1e9), others, min_epochs_after_growth=2)
    assert ex.replace and ex.group == 4 and ex.parent == 2 and 1 not in ex.top
    assert pbg.prefix_settled(fresh, 3, 1) and not pbg.prefix_settled(fresh, 3, 2)
    assert pbg.prefix_settled(sched(), 1, 5)  # no event: settled


def test_the_parent_is_drawn_uniformly_and_fixed_by_the_seed() -> None:
    others = [pt(i, sched((f"gru{i}", 1, 4)), 0.1 * i) for i in range(1, 8)]
    cand = pt(9, sched(("gru9", 1, 4)), 0.95, 1e9)
    parents = [decide(cand, others, quantile=0.5, seed=s).parent for s in range(60)]
    assert parents == [decide(cand, others, quantile=0.5, seed=s).parent for s in range(60)]
    assert set(parents) == {1, 2, 3, 4}  # m = 4 of 8, all better
    # the seed of one exploit: the study's seed, the replaced trial and the boundary
    assert pbg.child_seed(3, 9, 2) == pbg.child_seed(3, 9, 2)
    assert len({pbg.child_seed(3, 9, 2), pbg.child_seed(3, 9, 4), pbg.child_seed(3, 8, 2), pbg.child_seed(4, 9, 2)}) == 4


def test_prefix_schedule_is_the_model_as_it_stands() -> None:
    s = {**sched(("gru1", 1, 4), ("gru2", 3, 4)), "label": "x"}
    assert pbg.prefix_schedule(s, 2) == {"version": 1, "events": [s["events"][0]]}
    assert pbg.prefix_schedule(s, 1) == {"version": 1, "events": []}


@pytest.fixture(scope="module")
def space() -> Any:
    return load_space(SPACE, epochs=EPOCHS)


@pytest.fixture(scope="module")
def schedules(space: Any) -> list[dict[str, Any]]:
    grid = space.grid()
    out = {row_key(s): s.to_dict() for s in (space.decode(dict(zip(grid, c, strict=True)))
                                              for c in itertools.product(*grid.values()))}
    return list(out.values())


def _grown_at_1(schedules: list[dict[str, Any]]) -> dict[str, Any]:
    return next(s for s in schedules if len(s["events"]) == 1 and s["events"][0]["epoch"] == 1)


def _all_children(space: Any, parent: dict[str, Any], boundary: int) -> list[dict[str, Any]]:
    seen = {row_key(parent)}
    out = []
    while (c := pbg.draw_child(space, parent, boundary, rng=random.Random(len(seen)),
                               taken=lambda s: row_key(s) in seen)) is not None:
        seen.add(row_key(c[1]))
        out.append(c[1])
    return out


def test_a_child_continues_the_parents_prefix_and_is_never_taken(space: Any, schedules: list[dict[str, Any]]) -> None:
    base = {"version": 1, "events": []}
    taken = {row_key(base)}
    for seed in range(3):
        params, child = pbg.draw_child(space, base, 2, rng=random.Random(seed), taken=lambda s: row_key(s) in taken) or ({}, {})
        assert applied_prefix(child, 2) == "[]" and [e["epoch"] for e in child["events"]][:1] == [3]  # grows at 3
        assert row_key(space.decode(params)) == row_key(child)  # the params are the space's encoding of it
        assert row_key(child) not in taken
    # every child of the baseline at boundary 2 is one of the space's schedules growing at epoch 3
    want = {row_key(s) for s in schedules if s["events"] and s["events"][0]["epoch"] == 3}
    kids = {row_key(pbg.draw_child(space, base, 2, rng=random.Random(s), taken=lambda s: False)[1])  # type: ignore[index]
            for s in range(5)}
    assert kids <= want
    # nothing left: None (the baseline at boundary 4 has no future in this space; everything taken)
    assert pbg.draw_child(space, base, 4, rng=random.Random(0), taken=lambda s: row_key(s) == row_key(base)) is None
    assert pbg.draw_child(space, _grown_at_1(schedules), 2, rng=random.Random(0), taken=lambda s: True) is None


def test_a_parent_grown_at_epoch_1_has_its_plasticity_variants_as_children(space: Any,
                                                                          schedules: list[dict[str, Any]]) -> None:
    parent = _grown_at_1(schedules)
    grow = parent["events"][0]
    at3 = _all_children(space, parent, 3)  # shrink at 2 is applied by 3: only shrinks at 3 and 4 continue it
    assert sorted(c["events"][1]["epoch"] for c in at3) == [3, 4]
    at2 = _all_children(space, parent, 2)
    assert sorted(c["events"][1]["epoch"] for c in at2) == [2, 3, 4]
    for c in at2 + at3:
        assert c["events"][0] == grow and c["events"][1]["action"] == "shrink" and c["events"][1]["point"] == grow["point"]


def test_the_draw_is_uniform_and_fixed_by_the_rng(space: Any, schedules: list[dict[str, Any]]) -> None:
    parent = _grown_at_1(schedules)

    def draw(seed: int) -> str:
        c = pbg.draw_child(space, parent, 2, rng=random.Random(seed), taken=lambda s: row_key(s) == row_key(parent))
        assert c is not None
        return row_key(c[1])

    draws = [draw(s) for s in range(24)]
    assert draws[:6] == [draw(s) for s in range(6)]
    counts = Counter(draws)
    assert len(counts) == 3 and min(counts.values()) >= 3  # 3 children, about 8 each


def test_a_conditional_space_is_enumerated_through_its_flat_twin(schedules: list[dict[str, Any]]) -> None:
    data = yaml.safe_load(SPACE.read_text())
    data["encoding"] = "conditional"
    space = parse_space(data, "growbench conditional", epochs=EPOCHS)
    base = {"version": 1, "events": []}
    kids = set()
    for seed in range(4):
        c = pbg.draw_child(space, base, 2, rng=random.Random(seed), taken=lambda s: row_key(s) == row_key(base))
        assert c is not None
        params, child = c
        assert "plasticity" in params  # the conditional encoding
        assert applied_prefix(child, 2) == "[]" and child["events"][0]["epoch"] == 3
        assert row_key(space.decode(params)) == row_key(child)
        kids.add(row_key(child))
    again = pbg.draw_child(space, base, 2, rng=random.Random(0), taken=lambda s: row_key(s) == row_key(base))
    assert again is not None and row_key(again[1]) in kids and len(kids) > 1
    # a specific grown prefix is found every time (random draws hit it about once in 576)
    at2 = _all_children(space, _grown_at_1(schedules), 2)
    assert sorted(c["events"][1]["epoch"] for c in at2) == [2, 3, 4]
    assert pbg.draw_child(space, base, 2, rng=random.Random(0), taken=lambda s: True) is None


def test_a_space_without_a_flat_twin_is_drawn_at_random(monkeypatch: pytest.MonkeyPatch) -> None:
    space = parse_space(yaml.safe_load((SPACE.parent / "quickstart.yaml").read_text()), "quickstart", epochs=5)
    base = {"version": 1, "events": []}
    c = pbg.draw_child(space, base, 2, rng=random.Random(0), taken=lambda s: False)
    assert c is not None and applied_prefix(c[1], 2) == "[]" and row_key(space.decode(c[0])) == row_key(c[1])
    monkeypatch.setattr(pbg, "RANDOM_TRIES", 100)  # a refusal tries them all: fewer, to stay fast
    assert pbg.draw_child(space, base, 2, rng=random.Random(0), taken=lambda s: True) is None
