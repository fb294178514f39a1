"""GrowthSchedule: round trips, validation errors, and random valid schedules applied to every
registered backbone (hypothesis)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growsearch.backbones import create_backbone, list_backbones
from growsearch.backbones.base import GrowthPoint
from growsearch.errors import ScheduleError
from growsearch.schedule import GrowthEvent, GrowthSchedule, load_schedules

POINTS = {
    "stage2": GrowthPoint("stage2", 128, forms=("inplace", "parallel"), excluded=(("parallel", "net2net"),)),
    "gru2": GrowthPoint("gru2", 64, inits=("random", "zero_fanout")),
}


def _sched() -> GrowthSchedule:
    return GrowthSchedule.of(
        [
            {"point": "stage2", "epoch": 3, "neurons": 128, "form": "parallel", "lr": 5e-4},
            {"point": "gru2", "epoch": 1, "neurons": 64, "init": "zero_fanout", "freeze": "new_only"},
            {"point": "stage2", "epoch": 6, "action": "shrink", "rule": "magnitude"},
        ],
        label="paper-dropin",
    )


# ---- round trips --------------------------------------------------------------------------
def test_round_trips_dict_json_yaml(tmp_path: Path) -> None:
    s = _sched()
    assert [e.epoch for e in s.events] == [1, 3, 6]  # kept sorted
    assert GrowthSchedule.from_dict(s.to_dict()) == s
    assert GrowthSchedule.from_json(s.to_json()) == s
    assert GrowthSchedule.from_yaml(s.to_yaml()) == s
    f = tmp_path / "s.yaml"
    f.write_text(s.to_yaml())
    assert GrowthSchedule.load(f) == s
    j = tmp_path / "s.json"
    j.write_text(s.to_json())
    assert GrowthSchedule.load(j) == s
    assert GrowthSchedule.from_dict(GrowthSchedule.empty().to_dict()) == GrowthSchedule.empty()


def test_exported_file_with_several_schedules(tmp_path: Path) -> None:
    f = tmp_path / "export.yaml"
    a, b = _sched(), GrowthSchedule.of([{"point": "gru2", "epoch": 0, "neurons": 8}])
    import yaml

    f.write_text(yaml.safe_dump({"schedules": [{"schedule": a.to_dict(), "dev_eer": 0.1}, b.to_dict()]}))
    assert load_schedules(f) == [a, b]


def test_queries() -> None:
    s = _sched()
    assert [e.point for e in s.due(3)] == ["stage2"] and s.due(2) == ()
    assert s.epochs_with_events == (1, 3, 6) and s.first_epoch == 1
    assert s.total_grown() == {"stage2": 0, "gru2": 64}
    assert s.events[0].describe() == "+64 gru2@1 (inplace, zero_fanout)"


# ---- parse errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"events": [{"point": "gru2", "epoch": 0, "neurons": 0}]}, r"events\[0\]\.neurons.*got 0"),
        ({"events": [{"point": "gru2", "epoch": 0, "neurons": -3}]}, r"neurons.*got -3"),
        ({"events": [{"point": "gru2", "epoch": 0}]}, "needs neurons > 0"),
        ({"events": [{"point": "gru2", "epoch": -1, "neurons": 2}]}, r"epoch.*got -1"),
        ({"events": [{"point": "gru2", "epoch": 0, "neurons": 2, "init": "gradmax"}]}, r"init.*got 'gradmax'"),
        ({"events": [{"point": "gru2", "epoch": 0, "neurons": 2, "colour": 1}]}, "colour"),
        ({"events": [{"point": "gru2", "epoch": 2, "neurons": 2}, {"point": "gru2", "epoch": 2, "neurons": 4}]},
         "both change point 'gru2' at epoch 2"),
        (
            {"events": [{"point": "gru2", "epoch": 2, "neurons": 2}, {"point": "stage2", "epoch": 2, "neurons": 4, "freeze": "new_only"}]},
            "disagree on freeze",
        ),
        ({"version": 9}, "unsupported schedule version 9"),
        ("nonsense", "expected a mapping"),
    ],
)
def test_bad_schedules_raise_schedule_error(data: object, match: str) -> None:
    with pytest.raises(ScheduleError, match=match):
        GrowthSchedule.from_dict(data, source="s.yaml")


def test_malformed_text_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match=r"s.yaml:3(:\d+)?: malformed YAML"):
        GrowthSchedule.from_yaml("events:\n  - point: a\n  - : [\n", source="s.yaml")
    with pytest.raises(ScheduleError, match=r"s.json:1: malformed JSON"):
        GrowthSchedule.from_json("{events: }", source="s.json")
    with pytest.raises(ScheduleError, match="not found"):
        GrowthSchedule.load(tmp_path / "missing.yaml")


# ---- validate_for -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("events", "match"),
    [
        ([{"point": "stage9", "epoch": 0, "neurons": 2}], r"events\[0\]\.point: unknown growth point 'stage9'; valid points: gru2, stage2"),
        ([{"point": "gru2", "epoch": 10, "neurons": 2}], r"epoch 10 is outside the training run \(0..9 for 10 epochs\)"),
        ([{"point": "gru2", "epoch": 0, "neurons": 2, "form": "parallel"}], r"cannot grow 'parallel'; it supports inplace"),
        ([{"point": "gru2", "epoch": 0, "neurons": 2, "init": "net2net"}], r"does not support init 'net2net'; it supports random, zero_fanout"),
        ([{"point": "stage2", "epoch": 0, "neurons": 2, "form": "parallel", "init": "net2net"}],
         r"init 'net2net' with form 'parallel'; it supports random, zero_fanout"),
        ([{"point": "gru2", "epoch": 1, "action": "shrink", "neurons": 2}], "nothing was grown there before"),
        (
            [{"point": "gru2", "epoch": 0, "neurons": 2}, {"point": "gru2", "epoch": 1, "action": "shrink", "neurons": 3}],
            r"events\[1\]\.neurons: cannot shrink 'gru2' by 3: only 2 units were grown there before",
        ),
        (
            [
                {"point": "gru2", "epoch": 0, "neurons": 2},
                {"point": "gru2", "epoch": 1, "action": "shrink"},
                {"point": "gru2", "epoch": 2, "action": "shrink", "neurons": 1},
            ],
            "nothing was grown there before",
        ),
    ],
)
def test_validate_for_errors(events: list[dict], match: str) -> None:
    s = GrowthSchedule.from_dict({"events": events})
    with pytest.raises(ScheduleError, match=match):
        s.validate_for(POINTS, 10, source="s.yaml")


def test_validate_for_accepts_a_valid_schedule_against_real_backbones() -> None:
    s = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4, "form": "parallel"}, {"point": "stage2", "epoch": 2, "action": "shrink"}])
    assert s.validate_for(create_backbone("resnet18", "tiny").growth_points(), 3) is s
    with pytest.raises(ScheduleError, match="valid points: gru1, gru2, gru3, gru4"):
        s.validate_for(create_backbone("lcgrnn", "tiny").growth_points(), 3)


# ---- random valid schedules on every backbone ----------------------------------------------
EPOCHS = 8


@functools.cache
def _supported(name: str) -> dict[str, list[tuple[str, str]]]:
    """(form, init) pairs each point supports (a point may exclude a declared init for one form)."""
    pts = create_backbone(name, "tiny").growth_points().values()
    return {p.name: [(f, i) for f in p.forms for i in p.inits_for(f)] for p in pts}


@st.composite
def _schedules(draw: st.DrawFn, name: str) -> GrowthSchedule:
    points = create_backbone(name, "tiny").growth_points()
    support = _supported(name)
    n_events = draw(st.integers(1, 5))
    epochs = sorted(draw(st.lists(st.integers(0, EPOCHS - 1), min_size=n_events, max_size=n_events, unique=True)))
    grown = {p: 0 for p in points}
    split = {p: False for p in points}  # grown with net2net: no appended shrink (validate_for refuses it)
    events = []
    for epoch in epochs:
        point = draw(st.sampled_from(sorted(points)))
        p = points[point]
        rules = [r for r in p.shrink_rules if not (r == "appended" and split[point])]
        if grown[point] and rules and draw(st.booleans()):
            n = draw(st.one_of(st.none(), st.integers(1, grown[point] // p.step).map(lambda j, s=p.step: j * s)))
            rule = draw(st.sampled_from(rules))
            events.append({"point": point, "epoch": epoch, "action": "shrink", "neurons": n, "rule": rule})
            grown[point] = 0 if n is None else grown[point] - n
            split[point] = split[point] and grown[point] > 0
        else:
            form, init = draw(st.sampled_from(support[point]))
            n = p.step * draw(st.integers(1, 3))
            events.append({"point": point, "epoch": epoch, "neurons": n, "form": form, "init": init})
            grown[point] += n
            split[point] = split[point] or init == "net2net"
    return GrowthSchedule.from_dict({"events": events})


def _expected_params(name: str, sched: GrowthSchedule) -> int | None:
    """Parameter count computed from the schedule alone, for the backbones whose layout we know."""
    stacks: dict[str, list[list]] = {}
    for e in sched.events:
        st_ = stacks.setdefault(e.point, [])
        if e.action == "grow":
            st_.append([e.form, e.neurons])
            continue
        left = sum(k for _, k in st_) if e.neurons is None else e.neurons
        while left:
            take = min(left, st_[-1][1])
            st_[-1][1] -= take
            left -= take
            if st_[-1][1] == 0:
                st_.pop()
    inplace = {p: sum(k for f, k in s if f == "inplace") for p, s in stacks.items()}
    branches = {p: [k for f, k in s if f == "parallel"] for p, s in stacks.items()}
    if name == "lcgrnn":
        hid = [h + inplace.get(f"gru{i + 1}", 0) for i, h in enumerate((8, 8, 4, 4))]
        sizes = [60, *hid]
        gru = sum(3 * h * (sizes[i] + h) + 6 * h for i, h in enumerate(hid))
        return gru + hid[-1] * 2 + 2
    if name == "resnet18":
        widths, hidden = (4, 8, 8, 16), 8 + inplace.get("head", 0)

        def block(cin: int, inner: int, cout: int, proj: bool) -> int:
            return 9 * cin * inner + 2 * inner + 9 * inner * cout + 2 * cout + (cin * cout + 2 * cout if proj else 0)

        total = 49 * widths[0] + 2 * widths[0]
        cin = widths[0]
        for i, w in enumerate(widths):
            point = f"stage{i + 1}"
            total += block(cin, w + inplace.get(point, 0), w, i > 0)
            total += sum(block(cin, k, k, True) for k in branches.get(point, []))
            cin = w + sum(branches.get(point, []))
        return total + cin * hidden + hidden + hidden * 2 + 2
    return None


#: backbones whose growth points refuse some schedules that ``validate_for`` accepts:
#: wav2vec2_widen undoes only whole widenings, last first (see its module docstring).
BACKBONE_SPECIFIC_CONSTRAINTS = {"wav2vec2_widen"}


@pytest.mark.parametrize("name", list_backbones())
def test_random_valid_schedules_apply_and_count_params(name: str) -> None:
    wave = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0)) * 0.1

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(sched=_schedules(name))
    def check(sched: GrowthSchedule) -> None:
        torch.manual_seed(0)
        model = create_backbone(name, "tiny")
        sched.validate_for(model.growth_points(), EPOCHS)
        assert GrowthSchedule.from_yaml(sched.to_yaml()) == sched
        try:
            model.check_schedule(sched)
        except ScheduleError as exc:
            # only a backbone with documented extra constraints may refuse a point-valid schedule,
            # and then before anything is trained, naming the event
            assert name in BACKBONE_SPECIFIC_CONSTRAINTS, str(exc)
            assert "events[" in str(exc)
            return
        g = torch.Generator().manual_seed(1)
        for epoch in range(EPOCHS):
            for event in sched.due(epoch):
                model.apply_event(event, generator=g)
        assert len(model.history) == len(sched.events)
        for point, net in sched.total_grown().items():
            assert model.grown(point) == net
        model.eval()
        with torch.no_grad():
            y = model(wave)
        assert y.shape == (2, 2) and torch.isfinite(y).all()
        expected = _expected_params(name, sched)
        if expected is not None:
            assert sum(p.numel() for p in model.parameters()) == expected

    check()


def test_check_schedule_refuses_backbone_specific_impossibility_before_training() -> None:
    """wav2vec2_widen undoes whole widenings only: the dry run says so, naming the event, and
    leaves the model untouched."""
    model = create_backbone("wav2vec2_widen", "tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sched = GrowthSchedule.of([
        {"point": "layer0.width", "epoch": 1, "neurons": 64},
        {"point": "layer0.width", "epoch": 2, "action": "shrink", "neurons": 32},
    ])
    sched.validate_for(model.growth_points(), 4)  # the shared rules accept it
    with pytest.raises(ScheduleError, match=r"events\[1\] \(-32 layer0.width@2"):
        model.check_schedule(sched)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.history == []


def test_freeze_vocabulary_includes_new_units() -> None:
    from growsearch.growth.freeze import FREEZE_POLICIES
    from growsearch.vocabulary import FREEZES

    ev = GrowthEvent(point="gru2", epoch=1, neurons=4, freeze="new_units")
    assert ev.freeze == "new_units" and FREEZE_POLICIES == FREEZES and "new_units" in FREEZES
    with pytest.raises(ScheduleError, match="new_units"):
        GrowthSchedule.from_dict({"events": [{"point": "gru2", "epoch": 1, "neurons": 4, "freeze": "frozen"}]})
