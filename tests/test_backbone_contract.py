"""Contract tests every registered backbone passes (tiny presets).

Parametrised over the registry (``list_backbones()``, tiny presets) plus the growth options
that change how a point grows (``MODELS``: ``lcgrnn@tiny_authors`` grows with isolated GRU
coupling) x growth points x forms x inits, so a newly registered backbone is covered at once. A (form, init) pair that a point declares
but rejects for that form (e.g. ``net2net`` with ``parallel`` on ResNet stages) must raise a
ScheduleError without touching the model (``GrowthPoint.excluded``/``inits_for``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from growsearch.backbones import Backbone, create_backbone, list_backbones
from growsearch.errors import ScheduleError
from growsearch.schedule import GrowthEvent, GrowthSchedule
from growsearch.vocabulary import FORMS, FUNCTION_PRESERVING_INITS, INITS, SHRINK_RULES

BATCH = 4
SAMPLES = 4000


#: every registered backbone (tiny preset), plus ``name@preset`` for growth options of their own
#: (isolated GRU coupling): the full points x forms x inits matrix runs on these
CASE_MODELS = [*list_backbones(), "lcgrnn@tiny_authors"]
#: plus options that change the model around the growth points (linear / MLP heads, time
#: masking): the per-model tests run on these
MODELS = [*CASE_MODELS, "resnet18@tiny_authors", "wav2vec2@tiny_authors"]


def _make(name: str) -> Backbone:
    base, _, preset = name.partition("@")
    return create_backbone(base, preset or "tiny")


def _cases() -> list[tuple[str, str, str, str]]:
    out = []
    for name in CASE_MODELS:
        model = _make(name)
        for p in model.growth_points().values():
            for form in p.forms:
                for init in p.inits_for(form):
                    out.append((name, p.name, form, init))
    return out


def _excluded() -> list[tuple[str, str, str, str]]:
    out = []
    for name in CASE_MODELS:
        for p in _make(name).growth_points().values():
            out += [(name, p.name, form, init) for form in p.forms for init in p.inits if init not in p.inits_for(form)]
    return out


CASES = _cases()
CASE_IDS = ["-".join(c) for c in CASES]
POINTS = sorted({(c[0], c[1]) for c in CASES})
POINT_IDS = ["-".join(c) for c in POINTS]


def _build(name: str, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    return _make(name)


def _wave(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, SAMPLES, generator=g) * 0.1


def _neurons(model: Backbone, point: str) -> int:
    return 2 * model.growth_points()[point].step


def _forward(model: Backbone, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(123)  # same dropout masks (if any) before and after
    with torch.no_grad():
        return model(x)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _grow(model: Backbone, point: str, form: str, init: str, k: int, seed: int = 7):
    return model.grow(point, k, form=form, init=init, generator=torch.Generator().manual_seed(seed))


EXCLUDED = _excluded()


@pytest.mark.parametrize(("name", "point", "form", "init"), EXCLUDED or [pytest.param("-", "-", "-", "-", marks=pytest.mark.skip("none"))])
def test_excluded_form_init_pairs_are_refused_untouched(name: str, point: str, form: str, init: str) -> None:
    model = _build(name)
    before = _shapes(model)
    with pytest.raises(ScheduleError, match=f"{init}.*{form}"):
        model.grow(point, 2 * model.growth_points()[point].step, form=form, init=init)
    with pytest.raises(ScheduleError, match=f"{init}.*{form}"):
        model.apply_event(GrowthEvent(point=point, epoch=0, neurons=2 * model.growth_points()[point].step, form=form, init=init))
    with pytest.raises(ScheduleError, match=f"does not support init {init!r} with form {form!r}"):
        GrowthSchedule.of([{"point": point, "epoch": 0, "neurons": 2, "form": form, "init": init}]).validate_for(model.growth_points(), 1)
    assert _shapes(model) == before and not model.history


# ---- plain contract ---------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_finite_and_all_params_get_grads(name: str) -> None:
    model = _build(name)
    model.train()
    y = model(_wave())
    assert y.shape == (BATCH, 2)
    assert torch.isfinite(y).all()
    y.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", MODELS)
def test_growth_points_are_well_formed(name: str) -> None:
    model = _build(name)
    pts = model.growth_points()
    assert pts, "a backbone needs at least one growth point"
    for key, p in pts.items():
        assert key == p.name
        assert model.width(key) == p.base_width
        assert model.grown(key) == 0
        assert set(p.forms) <= set(FORMS)
        assert set(p.inits) <= set(INITS)
        assert set(p.shrink_rules) <= set(SHRINK_RULES)


def _check_result(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], res, *, values: bool = True) -> None:
    """``res`` names exactly the added/removed tensors and every changed one, with index maps
    that carry the surviving old values to their new places."""
    assert set(new) - set(old) == res.added
    assert set(old) - set(new) == res.removed
    for key in set(old) & set(new):
        if old[key].shape != new[key].shape or not torch.equal(old[key], new[key]):
            assert key in res.changed, f"{key} changed but is not in SurgeryResult.changed"
    for key, ch in res.changed.items():
        assert ch.old_shape == tuple(old[key].shape) and ch.new_shape == tuple(new[key].shape), key
        if values:
            keep = ~ch.new_mask()
            assert torch.equal(new[key][keep], ch.carry(old[key])[keep]), key


# ---- growth -----------------------------------------------------------------------------
def _only(pred) -> dict:
    keep = [(c, i) for c, i in zip(CASES, CASE_IDS) if pred(c)]
    return {"argvalues": [c for c, _ in keep], "ids": [i for _, i in keep]}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("name", "point", "form", "init"), **_only(lambda c: c[3] in FUNCTION_PRESERVING_INITS))
def test_function_preserving_inits_preserve_outputs(name: str, point: str, form: str, init: str, mode: str) -> None:
    model = _build(name)
    model.train(mode == "train")
    x = _wave()
    before = _forward(model, x)
    _grow(model, point, form, init, _neurons(model, point))
    after = _forward(model, x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "point", "form", "init"), **_only(lambda c: c[3] == "random"))
def test_random_init_changes_outputs(name: str, point: str, form: str, init: str) -> None:
    model = _build(name)
    model.eval()
    x = _wave()
    before = _forward(model, x)
    _grow(model, point, form, init, 4 * model.growth_points()[point].step)
    after = _forward(model, x)
    assert (after - before).abs().max() > 1e-6


@pytest.mark.parametrize(("name", "point", "form", "init"), CASES, ids=CASE_IDS)
def test_surgery_result_lists_every_changed_tensor(name: str, point: str, form: str, init: str) -> None:
    model = _build(name)
    model.eval()
    old = {k: v.clone() for k, v in model.state_dict().items()}
    k = _neurons(model, point)
    res = _grow(model, point, form, init, k)
    new = model.state_dict()
    assert res.action == "grow" and res.point == point and res.neurons == k
    _check_result(old, new, res, values=init != "net2net")  # net2net rescales split columns
    assert model.grown(point) == k
    # the full forward/backward still works and every parameter gets a gradient
    model.train()
    y = model(_wave())
    assert y.shape == (BATCH, 2) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("name", "point", "form", "init"), CASES, ids=CASE_IDS)
def test_optimizer_step_after_growth_updates_new_weights(name: str, point: str, form: str, init: str) -> None:
    model = _build(name)
    model.train()
    res = _grow(model, point, form, init, _neurons(model, point))
    params = dict(model.named_parameters())
    before = {k: v.detach().clone() for k, v in params.items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _wave(), torch.tensor([0, 1] * (BATCH // 2))
    for _ in range(2):  # zero fan-out: step 1 moves the fan-out, step 2 the fan-in
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for key, ch in res.changed.items():
        if key not in params or ch.new_shape == ch.old_shape:
            continue
        mask = ch.new_mask()
        assert (params[key].detach()[mask] != before[key][mask]).any(), f"new entries of {key} never moved"
    for key in res.added & set(params):
        assert not torch.equal(params[key].detach(), before[key]), f"new parameter {key} never moved"


@pytest.mark.parametrize(("name", "point", "form", "init"), CASES, ids=CASE_IDS)
def test_appended_shrink_restores_original(name: str, point: str, form: str, init: str) -> None:
    model = _build(name)
    model.eval()
    x = _wave()
    shapes, n0, before = _shapes(model), _n_params(model), _forward(model, x)
    _grow(model, point, form, init, _neurons(model, point))
    g = torch.Generator().manual_seed(2)
    model.grow(point, model.growth_points()[point].step, form=form, init="random", generator=g)  # a 2nd growth
    grown = {k: v.clone() for k, v in model.state_dict().items()}
    res = model.shrink(point, None, rule="appended")
    assert res.action == "shrink" and res.neurons == _neurons(model, point) + model.growth_points()[point].step
    _check_result(grown, model.state_dict(), res)
    assert not any(ch.new_mask().any() for ch in res.changed.values())
    assert _shapes(model) == shapes and _n_params(model) == n0
    assert model.grown(point) == 0
    if init != "net2net":  # net2net halved the sources' fan-out; truncation does not undo that
        torch.testing.assert_close(_forward(model, x), before, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "point", "form", "init"), **_only(lambda c: c[3] == "random"))
def test_magnitude_shrink_restores_shape(name: str, point: str, form: str, init: str) -> None:
    model = _build(name)
    shapes, n0 = _shapes(model), _n_params(model)
    k = _neurons(model, point)
    _grow(model, point, form, init, k)
    res = model.shrink(point, k, rule="magnitude")
    assert res.neurons == k
    assert _shapes(model) == shapes and _n_params(model) == n0
    assert model.width(point) == model.growth_points()[point].base_width
    assert _forward(model, _wave()).shape == (BATCH, 2)


@pytest.mark.parametrize("name", MODELS)
def test_successive_growths_then_full_shrink(name: str) -> None:
    model = _build(name)
    shapes = _shapes(model)
    g = torch.Generator().manual_seed(3)
    grown: list[str] = []
    for p in model.growth_points().values():
        for form in p.forms:
            model.grow(p.name, p.step, form=form, init="random", generator=g)
            model.grow(p.name, 2 * p.step, form=form, init=p.inits_for(form)[-1], generator=g)
            grown.append(p.name)
            y = _forward(model, _wave())
            assert y.shape == (BATCH, 2) and torch.isfinite(y).all()
    for point in reversed(grown):
        if model.grown(point):
            model.shrink(point, None)
    assert _shapes(model) == shapes


@pytest.mark.parametrize(("name", "point"), POINTS, ids=POINT_IDS)
def test_grow_and_shrink_a_point_while_another_is_grown(name: str, point: str) -> None:
    model = _build(name)
    model.eval()
    others = [p for p in model.growth_points() if p != point]
    if not others:
        pytest.skip("only one growth point")
    g = torch.Generator().manual_seed(5)
    pts = model.growth_points()
    for other in others:  # every other point grown first
        model.grow(other, pts[other].step, form=pts[other].forms[0], init="random", generator=g)
    x = _wave()
    shapes, before = _shapes(model), _forward(model, x)
    form = pts[point].forms[0]
    model.grow(point, _neurons(model, point), form=form, init="zero_fanout", generator=g)
    torch.testing.assert_close(_forward(model, x), before, rtol=1e-5, atol=1e-5)
    model.grow(point, _neurons(model, point), form=form, init="random", generator=g)
    model.shrink(point, None, rule="appended")
    assert _shapes(model) == shapes
    torch.testing.assert_close(_forward(model, x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_apply_event_records_history_and_replay_rebuilds_shapes(name: str) -> None:
    model = _build(name)
    point = next(iter(model.growth_points()))
    k = _neurons(model, point)
    form = model.growth_points()[point].forms[0]
    model.apply_event(GrowthEvent(point=point, epoch=0, neurons=k, form=form), generator=torch.Generator().manual_seed(0))
    model.apply_event(GrowthEvent(point=point, epoch=1, neurons=k, form=form, init="zero_fanout"), generator=torch.Generator().manual_seed(0))
    model.apply_event(GrowthEvent(point=point, epoch=2, action="shrink", neurons=k))
    assert len(model.history) == 3
    fresh = _build(name, seed=9)
    fresh.replay(model.history)
    assert _shapes(fresh) == _shapes(model)
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    torch.testing.assert_close(_forward(fresh, _wave()), _forward(model, _wave()))


@pytest.mark.parametrize("name", MODELS)
def test_bad_growth_requests_raise_schedule_errors(name: str) -> None:
    model = _build(name)
    point = next(iter(model.growth_points()))
    with pytest.raises(ScheduleError, match="valid points: .*" + point):
        model.grow("no_such_point", 2)
    with pytest.raises(ScheduleError, match="no_such_point"):
        model.shrink("no_such_point", 2)
    with pytest.raises(ScheduleError, match=point):
        model.grow(point, 0)
    with pytest.raises(ScheduleError, match="nothing was grown there before"):
        model.shrink(point, 1)
    with pytest.raises(ScheduleError, match="valid points"):
        model.apply_event(GrowthEvent(point="no_such_point", epoch=0, neurons=2))


@pytest.mark.parametrize(("name", "point"), POINTS, ids=POINT_IDS)
def test_growth_is_deterministic_given_the_generator(name: str, point: str) -> None:
    p = _build(name).growth_points()[point]
    states = []
    for _ in range(2):
        model = _build(name)
        g = torch.Generator().manual_seed(11)
        for form in p.forms:
            for init in p.inits_for(form):
                model.grow(point, p.step, form=form, init=init, generator=g)
        states.append(model.state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
