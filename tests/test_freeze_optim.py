"""Freeze policies and optimizer rebuilds after growth, on the toy MLP and every registered backbone."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from growsearch.backbones import create_backbone, list_backbones
from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.freeze import FreezePolicy
from growsearch.growth.optim import build_optimizer, check_optimizer, rebuild_optimizer, snapshot_optimizer
from growsearch.schedule import GrowthEvent
from growsearch.vocabulary import FREEZES, OPTIMIZER_STATES

from growth_toy import ToyMLP

EPOCH_EVENTS = [
    GrowthEvent(point="fc1", epoch=1, neurons=2, form="parallel"),
    GrowthEvent(point="fc1", epoch=1, neurons=3),
    GrowthEvent(point="fc2", epoch=1, neurons=2),
]


def _batch(model: nn.Module, samples: int = 16, n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, samples, generator=g), torch.tensor([0, 1] * (n // 2))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, policy: FreezePolicy | None, k: int, samples: int = 16) -> None:
    model.train()
    for i in range(k):
        x, y = _batch(model, samples, seed=i)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if policy is not None:
            policy.before_step()
        opt.step()
        if policy is not None:
            policy.after_step()


def _grown_toy() -> tuple[ToyMLP, list]:
    torch.manual_seed(0)
    m = ToyMLP()
    opt = build_optimizer(m.named_parameters(), name="adam", lr=1e-2)
    _steps(m, opt, None, 3)
    g = torch.Generator().manual_seed(1)
    return m, [m.apply_event(ev, generator=g) for ev in EPOCH_EVENTS]


# ---- freeze --------------------------------------------------------------------------
def test_all_trains_everything() -> None:
    m, results = _grown_toy()
    pol = FreezePolicy.build(m, results, "all")
    assert [n for n, _ in pol.trainable_named_parameters()] == [n for n, _ in m.named_parameters()]
    pol.before_step()
    pol.after_step()  # no-ops


def test_new_only_selects_new_entries() -> None:
    m, results = _grown_toy()
    pol = FreezePolicy.build(m, results, "new_only")
    names = {n for n, _ in pol.trainable_named_parameters()}
    # wholly new branch + tensors with new entries; head.bias has none
    assert names == {"par1.0.weight", "par1.0.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                     "bn2.weight", "bn2.bias", "head.weight"}
    assert not m.head.bias.requires_grad
    assert "par1.0.weight" not in pol.masks  # wholly new: no mask
    # fc2.weight: 3x4 -> parallel (+2 columns at the end) -> fc1 in place (+3 columns
    # inserted at 4, the branch's columns move to 7..8) -> fc2 (+2 rows): 5x9, old = [:3, :4]
    mask = pol.masks["fc2.weight"]
    assert mask.shape == (5, 9)
    assert mask[3:].all() and mask[:, 4:].all() and not mask[:3, :4].any()
    assert pol.masks["fc1.weight"][4:].all() and not pol.masks["fc1.weight"][:4].any()


@pytest.mark.parametrize("opt_name", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("mode", OPTIMIZER_STATES)
def test_new_only_keeps_old_entries_bit_identical(opt_name: str, mode: str) -> None:
    torch.manual_seed(0)
    m = ToyMLP()
    opt = build_optimizer(m.named_parameters(), name=opt_name, lr=1e-2, weight_decay=0.1, momentum=0.9 if opt_name == "sgd" else 0.0)
    _steps(m, opt, None, 3)  # non-zero moments to carry
    snap = snapshot_optimizer(opt, m)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    g = torch.Generator().manual_seed(1)
    results = [m.apply_event(ev, generator=g) for ev in EPOCH_EVENTS]
    pol = FreezePolicy.build(m, results, "new_only")
    opt = rebuild_optimizer(m, snap, results, mode=mode, named_params=pol.trainable_named_parameters())
    check_optimizer(opt, m)
    after_growth = {n: p.detach().clone() for n, p in m.named_parameters()}
    _steps(m, opt, pol, 7)
    now = dict(m.named_parameters())
    for name, p in now.items():
        if name in pol.masks:
            old = ~pol.masks[name]
            assert torch.equal(p.detach()[old], after_growth[name][old]), name
            assert not torch.equal(p.detach()[~old], after_growth[name][~old]), f"{name}: new entries did not learn"
        elif p.requires_grad:
            assert not torch.equal(p.detach(), after_growth[name]), f"{name} did not learn"
        else:
            assert torch.equal(p.detach(), after_growth[name]) and torch.equal(p.detach(), before[name]), name


def test_new_only_refuses_epoch_without_new_parameters() -> None:
    m, _ = _grown_toy()
    res = m.apply_event(GrowthEvent(point="fc2", epoch=2, action="shrink"))
    with pytest.raises(ScheduleError, match="add no new parameters"):
        FreezePolicy.build(m, [res], "new_only")


def test_unknown_policy_lists_valid() -> None:
    m, results = _grown_toy()
    with pytest.raises(ConfigError, match="valid policies: all, new_only"):
        FreezePolicy.build(m, results, "old_only")


def test_extra_trainable_and_release() -> None:
    m, results = _grown_toy()
    pol = FreezePolicy.build(m, results, "new_only", extra_trainable=["head"])
    assert m.head.bias.requires_grad and "head.weight" not in pol.masks
    g = torch.Generator().manual_seed(3)
    res = m.apply_event(GrowthEvent(point="fc2", epoch=3, neurons=1), generator=g)
    pol2 = FreezePolicy.build(m, [res], "new_only")
    assert not m.par1[0].weight.requires_grad  # new at epoch 1, old now
    pol3 = FreezePolicy.build(m, [], "all")
    assert all(p.requires_grad for p in m.parameters()) and not pol3.masks
    assert pol2.policy == "new_only"


def test_state_dict_round_trip_through_weights_only_load() -> None:
    m, results = _grown_toy()
    pol = FreezePolicy.build(m, results, "new_only")
    buf = io.BytesIO()
    torch.save(pol.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    FreezePolicy.build(m, [], "all")  # forget it
    pol2 = FreezePolicy.from_state_dict(m, state)
    assert [n for n, _ in pol2.trainable_named_parameters()] == [n for n, _ in pol.trainable_named_parameters()]
    assert all(torch.equal(pol2.masks[n], pol.masks[n]) for n in pol.masks)
    with pytest.raises(ConfigError, match="lacks"):
        FreezePolicy.from_state_dict(ToyMLP(), state)


# ---- optimizer -----------------------------------------------------------------------
def test_stale_optimizer_is_caught_and_rebuild_updates_new_weights() -> None:
    torch.manual_seed(0)
    m = ToyMLP()
    opt = build_optimizer(m.named_parameters(), name="adam", lr=1e-2)
    _steps(m, opt, None, 2)
    snap = snapshot_optimizer(opt, m)
    res = [m.apply_event(GrowthEvent(point="fc1", epoch=1, neurons=3))]
    w0 = m.fc1.weight.detach().clone()
    _steps(m, opt, None, 1)  # the bug: the old optimizer holds the old tensors
    assert torch.equal(m.fc1.weight.detach(), w0)
    with pytest.raises(RuntimeError, match="stale optimizer"):
        check_optimizer(opt, m)
    opt = rebuild_optimizer(m, snap, res, mode="fresh")
    check_optimizer(opt, m)
    assert len(opt.state) == 0 and opt.param_groups[0]["lr"] == 1e-2
    _steps(m, opt, None, 1)
    assert not torch.equal(m.fc1.weight.detach()[4:], w0[4:])  # the 3 new rows learn


def test_carry_pads_moments_and_keeps_unchanged_state() -> None:
    torch.manual_seed(0)
    m = ToyMLP()
    opt = build_optimizer(m.named_parameters(), name="adamw", lr=1e-2, weight_decay=0.01)
    _steps(m, opt, None, 3)
    old = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in m.named_parameters()}
    snap = snapshot_optimizer(opt, m)
    g = torch.Generator().manual_seed(1)
    results = [m.apply_event(ev, generator=g) for ev in EPOCH_EVENTS]
    new = rebuild_optimizer(m, snap, results, mode="carry", lr=5e-3)
    assert isinstance(new, torch.optim.AdamW) and new.param_groups[0]["lr"] == 5e-3
    assert new.param_groups[0]["weight_decay"] == 0.01
    params = dict(m.named_parameters())
    assert params["par1.0.weight"] not in new.state  # wholly new: no state
    assert torch.equal(new.state[params["head.bias"]]["exp_avg"], old["head.bias"]["exp_avg"])  # unchanged
    # fc2.weight: 3x4 -> 5x9; old entries [:3, :4] stay, none of the rest existed before
    st = new.state[params["fc2.weight"]]
    for key in ("exp_avg", "exp_avg_sq"):
        assert st[key].shape == (5, 9)
        assert torch.equal(st[key][:3, :4], old["fc2.weight"][key])
        mask = torch.ones(5, 9, dtype=torch.bool)
        mask[:3, :4] = False
        assert (st[key][mask] == 0).all()
    assert torch.equal(st["step"], old["fc2.weight"]["step"])
    # fc1.weight rows appended
    assert torch.equal(new.state[params["fc1.weight"]]["exp_avg"][:4], old["fc1.weight"]["exp_avg"])
    _steps(m, new, None, 1)  # and it steps


def test_carry_slices_moments_on_shrink() -> None:
    torch.manual_seed(0)
    m = ToyMLP()
    g = torch.Generator().manual_seed(1)
    res0 = [m.apply_event(GrowthEvent(point="fc2", epoch=0, neurons=2), generator=g)]
    opt = rebuild_optimizer(m, None, res0, name="adam", lr=1e-2, mode="carry")
    _steps(m, opt, None, 3)
    old = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in m.named_parameters()}
    snap = snapshot_optimizer(opt, m)
    res = [m.apply_event(GrowthEvent(point="fc2", epoch=2, action="shrink"))]
    new = rebuild_optimizer(m, snap, res, mode="carry")
    params = dict(m.named_parameters())
    assert torch.equal(new.state[params["fc2.weight"]]["exp_avg_sq"], old["fc2.weight"]["exp_avg_sq"][:3])
    assert torch.equal(new.state[params["head.weight"]]["exp_avg"], old["head.weight"]["exp_avg"][:, :3])
    assert torch.equal(new.state[params["bn2.bias"]]["exp_avg"], old["bn2.bias"]["exp_avg"][:3])
    check_optimizer(new, m)
    _steps(m, new, None, 1)


def test_optimizer_errors() -> None:
    m = ToyMLP()
    with pytest.raises(ConfigError, match="valid optimizers: adam, adamw, sgd"):
        build_optimizer(m.named_parameters(), name="lion", lr=1e-3)
    with pytest.raises(ConfigError, match="learning rate"):
        build_optimizer(m.named_parameters(), lr=0.0)
    with pytest.raises(ConfigError, match="no parameters"):
        build_optimizer([], lr=1e-3)
    sgd = build_optimizer(m.named_parameters(), name="sgd", lr=1e-2, momentum=0.9)
    _steps(m, sgd, None, 1)
    snap = snapshot_optimizer(sgd, m)
    with pytest.raises(ConfigError, match="cannot carry sgd state into adam"):
        rebuild_optimizer(m, snap, [], mode="carry", name="adam")
    with pytest.raises(ConfigError, match="valid modes: fresh, carry"):
        rebuild_optimizer(m, snap, [], mode="keep")
    with pytest.raises(ConfigError, match="learning rate"):
        rebuild_optimizer(m, None, [], name="adam")


# ---- every registered backbone ---------------------------------------------------------
def _first_grow_event(model: nn.Module) -> GrowthEvent:
    name, p = sorted(model.growth_points().items())[0]
    return GrowthEvent(point=name, epoch=1, neurons=max(1, p.step), form=p.forms[0], init="random")


#: every registered backbone (tiny preset) plus growth options of their own (``name@preset``)
MODELS = [*list_backbones(), "lcgrnn@tiny_authors", "resnet18@tiny_authors", "wav2vec2@tiny_authors"]


def _make(name: str) -> nn.Module:
    base, _, preset = name.partition("@")
    return create_backbone(base, preset or "tiny")


@pytest.mark.parametrize("policy", ["new_only", "new_units"])
@pytest.mark.parametrize("backbone", MODELS)
@pytest.mark.parametrize("mode", OPTIMIZER_STATES)
def test_backbones_new_only_and_rebuild(backbone: str, mode: str, policy: str) -> None:
    torch.manual_seed(0)
    m = _make(backbone)
    samples = 4000  # a quarter second keeps the real backbones fast
    opt = build_optimizer(m.named_parameters(), name="adamw", lr=1e-3, weight_decay=0.1)
    _steps(m, opt, None, 1, samples)
    snap = snapshot_optimizer(opt, m)
    res = [m.apply_event(_first_grow_event(m), generator=torch.Generator().manual_seed(0))]
    pol = FreezePolicy.build(m, res, policy, extra_trainable=["head"] if policy == "new_units" else ())
    opt = rebuild_optimizer(m, snap, res, mode=mode, named_params=pol.trainable_named_parameters())
    check_optimizer(opt, m)
    ref = {n: p.detach().clone() for n, p in m.named_parameters()}
    _steps(m, opt, pol, 2, samples)
    learned = 0
    for n, p in m.named_parameters():
        if n in pol.masks:
            assert torch.equal(p.detach()[~pol.masks[n]], ref[n][~pol.masks[n]]), n
            learned += int(not torch.equal(p.detach()[pol.masks[n]], ref[n][pol.masks[n]]))
        elif not p.requires_grad:
            assert torch.equal(p.detach(), ref[n]), n
        else:
            learned += int(not torch.equal(p.detach(), ref[n]))
    assert learned > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_new_only_on_cuda_after_moving_the_model() -> None:
    m, results = _grown_toy()
    pol = FreezePolicy.build(m, results, "new_only")  # masks on the CPU
    m.cuda()
    opt = build_optimizer(pol.trainable_named_parameters(), name="adamw", lr=1e-2, weight_decay=0.1)
    ref = {n: p.detach().clone() for n, p in m.named_parameters()}
    m.train()
    for i in range(3):
        x, y = _batch(m, seed=i)
        opt.zero_grad()
        F.cross_entropy(m(x.cuda()), y.cuda()).backward()
        pol.before_step()
        opt.step()
        pol.after_step()
    for n, p in m.named_parameters():
        if n in pol.masks:
            assert torch.equal(p.detach()[~pol.masks[n]], ref[n][~pol.masks[n]]), n


# ---- new_units ------------------------------------------------------------------------------
def test_new_units_trains_new_rows_not_consumer_columns() -> None:
    """``new_units``: a widened producer trains its new rows; the consumer's new input columns
    stay at their init (frozen like old entries), unlike ``new_only``."""
    torch.manual_seed(0)
    m = create_backbone("lcgrnn", "tiny")
    res = [m.apply_event(GrowthEvent(point="gru2", epoch=1, neurons=4), generator=torch.Generator().manual_seed(0))]
    only = FreezePolicy.build(m, res, "new_only")
    n_only = only.trainable_entries()  # (building another policy re-flags the model's parameters)
    units = FreezePolicy.build(m, res, "new_units")
    assert "grus.2.weight_ih_l0" in only.masks  # the consumer's new columns train under new_only
    assert "grus.2.weight_ih_l0" not in dict(units.trainable_named_parameters())
    h, k = 8, 4
    mask = units.masks["grus.1.weight_hh_l0"]  # (3 * 12, 12): new units' rows train, all columns
    rows = torch.zeros(3 * (h + k), dtype=torch.bool)
    for g in range(3):
        rows[g * (h + k) + h: (g + 1) * (h + k)] = True
    assert torch.equal(mask, rows.view(-1, 1).expand_as(mask))
    # dense coupling: old rows x new columns are new entries under new_only, fixed under new_units
    assert int(only.masks["grus.1.weight_hh_l0"].sum()) == int(mask.sum()) + 3 * h * k
    # counts: new rows of weight_ih (3k x 8) and weight_hh (3k x 12) + 2 biases (3k each)
    assert units.trainable_entries() == 3 * k * 8 + 3 * k * (h + k) + 2 * 3 * k
    assert n_only == units.trainable_entries() + 3 * h * k + 3 * 4 * k


def test_new_units_refuses_an_epoch_without_new_units() -> None:
    m = create_backbone("lcgrnn", "tiny")
    g = torch.Generator().manual_seed(0)
    m.apply_event(GrowthEvent(point="gru1", epoch=1, neurons=2), generator=g)
    res = m.apply_event(GrowthEvent(point="gru1", epoch=2, action="shrink", freeze="all"), generator=g)
    with pytest.raises(ScheduleError, match="freeze 'new_units'"):
        FreezePolicy.build(m, [res], "new_units")


# ---- isolated GRU coupling -------------------------------------------------------------------
def _isolated_block(m: nn.Module, layer: int, h: int) -> torch.Tensor:
    w = m.grus[layer].weight_hh_l0.detach()
    hn = m.grus[layer].hidden_size
    return torch.cat([w[g * hn: g * hn + h, h:] for g in range(3)])


@pytest.mark.parametrize("policy", FREEZES)
@pytest.mark.parametrize("opt_name", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("mode", OPTIMIZER_STATES)
def test_isolated_gru_block_stays_zero_and_is_not_a_parameter(policy: str, opt_name: str, mode: str) -> None:
    """Old units never read new units: the old-rows x new-columns block of ``weight_hh`` is exactly
    zero after training under every freeze policy, optimizer (with weight decay) and rebuild mode,
    through a second growth and a magnitude shrink, and is not counted as parameters."""
    from growsearch.metrics.cost import count_params

    torch.manual_seed(0)
    m = create_backbone("lcgrnn", "tiny_authors")
    dense = create_backbone("lcgrnn", "tiny")
    h, k = 8, 4
    wd = {"weight_decay": 0.1}
    opt = build_optimizer(m.named_parameters(), name=opt_name, lr=1e-2, momentum=0.9 if opt_name == "sgd" else 0.0, **wd)
    _steps(m, opt, None, 2, 4000)
    n0 = count_params(m)["total"]
    snap = snapshot_optimizer(opt, m)
    res = [m.apply_event(GrowthEvent(point="gru2", epoch=1, neurons=k, freeze=policy), generator=torch.Generator().manual_seed(0))]
    dense.apply_event(GrowthEvent(point="gru2", epoch=1, neurons=k), generator=torch.Generator().manual_seed(0))
    assert count_params(m)["total"] == n0 + sum(p.numel() for p in dense.parameters()) - sum(
        p.numel() for p in create_backbone("lcgrnn", "tiny").parameters()) - 3 * h * k
    pol = FreezePolicy.build(m, res, policy, extra_trainable=["head"])
    opt = rebuild_optimizer(m, snap, res, mode=mode, named_params=pol.trainable_named_parameters(), **wd)
    _steps(m, opt, pol, 3, 4000)
    assert torch.equal(_isolated_block(m, 1, h), torch.zeros(3 * h, k))
    assert pol.trainable_entries() <= count_params(m)["total"]
    # a second growth: the first grown units do not read the second ones either
    snap = snapshot_optimizer(opt, m)
    res = [m.apply_event(GrowthEvent(point="gru2", epoch=2, neurons=2), generator=torch.Generator().manual_seed(1))]
    pol = FreezePolicy.build(m, res, "all")
    opt = rebuild_optimizer(m, snap, res, mode=mode, named_params=pol.trainable_named_parameters(), **wd)
    _steps(m, opt, pol, 2, 4000)
    assert torch.equal(_isolated_block(m, 1, h + k)[:, -2:], torch.zeros(3 * (h + k), 2))
    assert torch.equal(_isolated_block(m, 1, h), torch.zeros(3 * h, k + 2))
    assert count_params(m)["total"] == n0 + _grown_entries(h, 4, (k, 2))
    # magnitude shrink keeps the isolation of the units that stay
    m.apply_event(GrowthEvent(point="gru2", epoch=3, action="shrink", neurons=3, rule="magnitude"))
    gens = torch.tensor(m._gens[1])
    w = m.grus[1].weight_hh_l0.detach()
    blocked = (gens.view(1, -1) > gens.view(-1, 1)).repeat(3, 1)
    assert bool(blocked.any()) and torch.equal(w[blocked], torch.zeros(int(blocked.sum())))


def _grown_entries(h: int, out: int, ks: tuple[int, ...]) -> int:
    """Parameters added to a GRU layer of ``h`` units (consumer: a GRU of ``out`` units) by the
    isolated growths ``ks``: each unit has input, recurrent (from itself and older units) rows and
    two biases per gate; the consumer gets one column per unit and gate."""
    n, width = 0, h
    for k in ks:
        inp = 3 * k * 8  # gru1 has 8 units
        rec = 3 * k * (width + k)
        n += inp + rec + 2 * 3 * k + 3 * out * k
        width += k
    return n
