"""Growth primitives against analytic answers: Linear/Conv/BatchNorm/GRU widening and narrowing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from growsearch.backbones import create_backbone
from growsearch.growth.gru import gate_rows, narrow_gru, narrow_gru_input, unit_norms, widen_gru, widen_gru_input
from growsearch.growth.init import Net2NetPlan, default_uniform
from growsearch.growth.widen import (
    keep_appended,
    keep_largest,
    narrow_in,
    narrow_norm,
    narrow_out,
    narrow_units,
    unit_scores,
    widen_in,
    widen_norm,
    widen_out,
    widen_units,
)
from growsearch.vocabulary import INITS


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))


# ---- initialisers -------------------------------------------------------------------------
def test_default_uniform_bound_and_determinism() -> None:
    a = default_uniform((200, 9), 9, _gen(1))
    assert a.abs().max() <= 1 / 3 and a.abs().max() > 0.3  # U(-1/sqrt(9), 1/sqrt(9))
    torch.testing.assert_close(a, default_uniform((200, 9), 9, _gen(1)), rtol=0, atol=0)
    assert not torch.equal(a, default_uniform((200, 9), 9, _gen(2)))


def test_net2net_plan_divisors_count_copies() -> None:
    plan = Net2NetPlan(torch.tensor([2, 2, 0]), torch.tensor([2.0, 1.0, 3.0, 1.0]))
    drawn = Net2NetPlan.draw(4, 3, _gen(0))
    assert drawn.divisor.tolist() == (1 + torch.bincount(drawn.sources, minlength=4)).float().tolist()
    old = torch.arange(8.0).view(2, 4)
    scaled, new = plan.split_columns(old, dim=1)
    torch.testing.assert_close(scaled, torch.tensor([[0.0, 1.0, 2 / 3, 3.0], [2.0, 5.0, 2.0, 7.0]]))
    torch.testing.assert_close(new, torch.tensor([[2 / 3, 2 / 3, 0.0], [2.0, 2.0, 2.0]]))
    # the total contribution of a unit and its copies equals the old one
    torch.testing.assert_close(scaled.sum(1) + new.sum(1), old.sum(1))


def test_keep_largest_removes_smallest_scores_ties_towards_later() -> None:
    assert keep_largest(torch.tensor([3.0, 0.5, 2.0, 0.5, 9.0]), 2).tolist() == [0, 2, 4]
    assert keep_largest(torch.tensor([1.0, 1.0, 1.0]), 1).tolist() == [0, 1]


# ---- Linear / Conv / BatchNorm ---------------------------------------------------------------
@pytest.mark.parametrize("init", ["zero_fanout", "net2net"])
def test_linear_pair_widening_preserves_function(init: str) -> None:
    net = _mlp()
    x = torch.randn(7, 5)
    y0 = net(x)
    plan = Net2NetPlan.draw(6, 4, _gen(3)) if init == "net2net" else None
    widen_out(net[0], 4, init=init, generator=_gen(3), plan=plan)
    widen_in(net[2], 4, init=init, generator=_gen(3), plan=plan)
    assert (net[0].out_features, net[2].in_features) == (10, 10)
    assert net[0].weight.shape == (10, 5) and net[2].weight.shape == (3, 10)
    torch.testing.assert_close(net(x), y0)
    if init == "zero_fanout":
        assert torch.count_nonzero(net[2].weight[:, 6:]) == 0
        assert torch.count_nonzero(net[0].weight[6:]) == 20
    else:
        assert plan is not None
        torch.testing.assert_close(net[0].weight[6:], net[0].weight[plan.sources])


def test_random_linear_widening_uses_default_bounds_and_keeps_old_values() -> None:
    net = _mlp()
    w0, w2 = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    widen_out(net[0], 50, init="random", generator=_gen(1))
    widen_in(net[2], 50, init="random", generator=_gen(1))
    assert torch.equal(net[0].weight[:6], w0) and torch.equal(net[2].weight[:, :6], w2)
    assert net[0].weight[6:].abs().max() <= 1 / math.sqrt(5)  # fan-in 5
    assert net[2].weight[:, 6:].abs().max() <= 1 / math.sqrt(56)  # new fan-in 56
    assert torch.count_nonzero(net[2].weight[:, 6:]) == 150


def test_narrowing_undoes_widening_exactly() -> None:
    net = _mlp()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    widen_out(net[0], 3, init="random", generator=_gen(0))
    widen_in(net[2], 3, init="random", generator=_gen(0))
    narrow_out(net[0], torch.arange(6))
    narrow_in(net[2], torch.arange(6))
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert (net[0].out_features, net[2].in_features) == (6, 6)


class _TwoProducers(nn.Module):
    """``out(relu(a(x)) * b(x))``: two producers with one unit layout (like q/k/v) and a consumer."""

    def __init__(self, unit: int, units: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, unit * units), nn.Linear(5, unit * units)
        self.out = nn.Linear(unit * units, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.a(x)) * self.b(x))


@pytest.mark.parametrize("init", ["zero_fanout", "net2net"])
def test_multi_row_units_widen_as_wholes_and_preserve_function(init: str) -> None:
    torch.manual_seed(0)
    net, x = _TwoProducers(unit=3, units=2), torch.randn(7, 5)
    y0 = net(x)
    a0 = net.a.weight.detach().clone()
    changes = widen_units(net, ("a", "b"), "out", 3, unit=3, init=init, generator=_gen(4))
    assert set(changes) == {"a.weight", "a.bias", "b.weight", "b.bias", "out.weight"}
    assert net.a.weight.shape == (15, 5) and net.out.weight.shape == (4, 15)
    torch.testing.assert_close(net(x), y0)
    if init == "net2net":  # each new unit is a whole copy of one old unit, rows in order
        for j in range(3):
            new = net.a.weight[6 + 3 * j : 9 + 3 * j].detach()
            assert any(torch.equal(new, a0[3 * s : 3 * s + 3]) for s in range(2))
    # zero fan-out units have zero score; magnitude removes them; appended undoes the rest
    if init == "zero_fanout":
        assert unit_scores(net, ("a", "b"), "out", unit=3)[2:].tolist() == [0.0, 0.0, 0.0]
        keep = keep_largest(unit_scores(net, ("a", "b"), "out", unit=3), 3)
        assert keep.tolist() == [0, 1]
    else:
        keep = keep_appended(5, 3)
    narrow_units(net, ("a", "b"), "out", keep, unit=3)
    assert net.a.weight.shape == (6, 5) and net.out.in_features == 6
    if init == "zero_fanout":
        torch.testing.assert_close(net(x), y0, rtol=0, atol=0)


def test_net2net_plan_expands_to_rows() -> None:
    plan = Net2NetPlan(torch.tensor([1, 1]), torch.tensor([1.0, 3.0])).expand(2)
    assert plan.sources.tolist() == [2, 3, 2, 3]
    assert plan.divisor.tolist() == [1.0, 1.0, 3.0, 3.0]


def test_batchnorm_new_channels_are_neutral_or_copied() -> None:
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 3.0, 4.0]))
        bn.running_mean.copy_(torch.tensor([0.5, 0.6, 0.7]))
    ch = widen_norm(bn, 2)
    assert bn.num_features == 5
    assert bn.weight.tolist()[3:] == [1.0, 1.0] and bn.bias.tolist()[3:] == [0.0, 0.0]
    assert bn.running_mean.tolist()[3:] == [0.0, 0.0] and bn.running_var.tolist()[3:] == [1.0, 1.0]
    assert set(ch) == {"weight", "bias", "running_mean", "running_var"}
    widen_norm(bn, 2, plan=Net2NetPlan(torch.tensor([1, 2]), torch.ones(5)))
    assert bn.weight.tolist()[5:] == [3.0, 4.0]
    torch.testing.assert_close(bn.running_mean[5:], torch.tensor([0.6, 0.7]))
    narrow_norm(bn, torch.tensor([0, 2]))
    assert bn.num_features == 2 and bn.weight.tolist() == [2.0, 4.0] and bn.running_var.shape == (2,)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("init", ["zero_fanout", "net2net"])
def test_conv_bn_conv_widening_preserves_function_with_batch_stats(init: str, mode: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    with torch.no_grad():  # non-trivial statistics for eval mode
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.train(mode == "train")
    x = torch.randn(5, 2, 6, 6)
    y0 = net(x)
    plan = Net2NetPlan.draw(4, 3, _gen(0)) if init == "net2net" else None
    widen_out(net[0], 3, init=init, generator=_gen(0), plan=plan)
    widen_norm(net[1], 3, plan=plan)
    widen_in(net[3], 3, init=init, generator=_gen(0), plan=plan)
    torch.testing.assert_close(net(x), y0)
    assert net[0].out_channels == 7 and net[3].in_channels == 7


# ---- GRU ----------------------------------------------------------------------------------
def _gru_reference(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """The GRU equations written out step by step: ``(B, T, in)`` -> ``(B, T, H)``."""
    h_size = gru.hidden_size
    w_ih, w_hh, b_ih, b_hh = gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
    h = x.new_zeros(x.shape[0], h_size)
    out = []
    for t in range(x.shape[1]):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = torch.sigmoid(gi[:, :h_size] + gh[:, :h_size])
        z = torch.sigmoid(gi[:, h_size : 2 * h_size] + gh[:, h_size : 2 * h_size])
        n = torch.tanh(gi[:, 2 * h_size :] + r * gh[:, 2 * h_size :])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out, dim=1)


def _gru(inp: int = 3, hidden: int = 4, seed: int = 0) -> nn.GRU:
    torch.manual_seed(seed)
    return nn.GRU(inp, hidden, batch_first=True)


@pytest.mark.parametrize("init", INITS)
def test_widened_gru_is_a_fused_gru_matching_the_equations(init: str) -> None:
    gru = _gru()
    x = torch.randn(2, 6, 3)
    y0, _ = gru(x)
    plan = Net2NetPlan.draw(4, 2, _gen(1)) if init == "net2net" else None
    ch = widen_gru(gru, 2, init=init, generator=_gen(1), plan=plan)
    assert type(gru) is nn.GRU and gru.hidden_size == 6
    assert [tuple(w.shape) for w in gru._flat_weights] == [(18, 3), (18, 6), (18,), (18,)]
    assert all(a is b for a, b in zip(gru._flat_weights, [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]))
    y, h = gru(x)
    assert y.shape == (2, 6, 6) and h.shape == (1, 2, 6)
    torch.testing.assert_close(y, _gru_reference(gru, x), rtol=1e-5, atol=1e-6)
    # old units never see new ones: their states are the old GRU's, for every init
    torch.testing.assert_close(y[..., :4], y0, rtol=1e-5, atol=1e-6)
    # old rows moved to their places in every gate block
    old_pos = gate_rows(6, torch.arange(4))
    assert torch.equal(ch["weight_ih_l0"].dst[0], old_pos)
    if init == "net2net":
        assert plan is not None
        torch.testing.assert_close(y[..., 4:], y0[..., plan.sources], rtol=1e-5, atol=1e-6)
    else:
        assert torch.count_nonzero(gru.weight_hh_l0[old_pos][:, 4:]) == 0
        assert torch.count_nonzero(gru.bias_ih_l0[gate_rows(6, torch.arange(4, 6))]) == 0
        assert torch.count_nonzero(gru.weight_hh_l0[gate_rows(6, torch.arange(4, 6))]) == 36


@pytest.mark.parametrize("init", INITS)
def test_gru_consumer_columns(init: str) -> None:
    first, second = _gru(3, 4, 0), _gru(4, 5, 1)
    x = torch.randn(2, 5, 3)
    y0, _ = second(first(x)[0])
    plan = Net2NetPlan.draw(4, 3, _gen(2)) if init == "net2net" else None
    widen_gru(first, 3, init=init, generator=_gen(2), plan=plan)
    widen_gru_input(second, 3, init=init, generator=_gen(2), plan=plan)
    assert second.input_size == 7 and second.weight_ih_l0.shape == (15, 7)
    y, _ = second(first(x)[0])
    if init == "random":
        assert (y - y0).abs().max() > 1e-4
        bound = math.sqrt(6 / (15 + 7))  # Xavier for the new (3H, in') shape
        assert second.weight_ih_l0[:, 4:].abs().max() <= bound
    else:
        torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-6)


def test_gru_narrowing_undoes_widening_and_picks_by_magnitude() -> None:
    first, second = _gru(3, 4, 0), _gru(4, 5, 1)
    state = [{k: v.clone() for k, v in m.state_dict().items()} for m in (first, second)]
    widen_gru(first, 2, init="random", generator=_gen(0))
    widen_gru_input(second, 2, init="random", generator=_gen(0))
    narrow_gru(first, torch.arange(4))
    narrow_gru_input(second, torch.arange(4))
    for m, s in zip((first, second), state):
        for k, v in m.state_dict().items():
            assert torch.equal(v, s[k]), k
    with torch.no_grad():  # unit 1 gets the smallest fan-in
        first.weight_ih_l0[gate_rows(4, torch.tensor([1]))] = 0
        first.weight_hh_l0[gate_rows(4, torch.tensor([1]))] = 0
    assert unit_norms(first).argmin().item() == 1
    assert keep_largest(unit_norms(first), 1).tolist() == [0, 2, 3]


# ---- backbone-level checks that need the concrete layout -------------------------------------
def test_resnet_parallel_branch_is_a_basic_block_with_projection() -> None:
    torch.manual_seed(0)
    m = create_backbone("resnet18", "tiny")
    n0 = sum(p.numel() for p in m.parameters())
    cin, k = m.stage2.in_channels, 6
    res = m.grow("stage2", k, form="parallel", init="zero_fanout", generator=_gen(0))
    block = 9 * cin * k + 2 * k + 9 * k * k + 2 * k + cin * k + 2 * k  # conv1 bn1 conv2 bn2 proj bn
    consumers = 9 * k * m.stage3.blocks[0].conv1.out_channels + k * m.stage3.blocks[0].downsample[0].out_channels
    assert sum(p.numel() for p in m.parameters()) == n0 + block + consumers
    assert m.width("stage2") == m.widths[1] + k and m.stage2.out_channels == m.widths[1] + k
    assert "stage2.branches.0.downsample.1.running_var" in res.added
    assert set(res.changed) == {"stage3.blocks.0.conv1.weight", "stage3.blocks.0.downsample.0.weight"}


def test_resnet_paper_dropin_widths() -> None:
    m = create_backbone("resnet18", "paper")
    g = _gen(0)
    m.grow("stage2", 128, form="parallel", generator=g)
    m.grow("stage3", 256, form="parallel", generator=g)
    assert (m.stage2.out_channels, m.stage3.out_channels) == (256, 512)
    assert (m.width("stage2"), m.width("stage3")) == (256, 512)
    assert m.stage4.blocks[0].conv1.in_channels == 512


def test_resnet_magnitude_shrink_removes_the_weakest_channels() -> None:
    torch.manual_seed(0)
    m = create_backbone("resnet18", "tiny")
    m.grow("stage3", 3, init="random", generator=_gen(0))
    conv = m.stage3.blocks[0].conv1
    with torch.no_grad():
        conv.weight[1] = 0  # an original channel becomes the weakest
        conv.weight[9] *= 1e-3  # and a grown one the second weakest
    survivors = conv.weight.detach()[[0, 2, 3, 4, 5, 6, 7, 8, 10]].clone()
    m.shrink("stage3", 2, rule="magnitude")
    assert torch.equal(m.stage3.blocks[0].conv1.weight.detach(), survivors)
    assert m.width("stage3") == 9 and m.grown("stage3") == 1


def test_resnet_partial_shrink_of_a_branch_narrows_it() -> None:
    torch.manual_seed(0)
    m = create_backbone("resnet18", "tiny")
    m.eval()
    feats = torch.randn(2, 64, 224)
    m.grow("stage4", 2, form="parallel", init="random", generator=_gen(0))
    m.grow("stage4", 5, form="parallel", init="random", generator=_gen(1))
    res = m.shrink("stage4", 3, rule="appended")
    assert [b.conv2.out_channels for b in m.stage4.branches] == [2, 2]
    assert m.fc1.in_features == 16 + 4 and res.changed["fc1.weight"].new_shape == (8, 20)
    assert m.stage4.branches[1].conv1.out_channels == 2 and m.grown("stage4") == 4
    assert m.body(feats).shape == (2, 2)
    res = m.shrink("stage4", None)
    assert len(m.stage4.branches) == 0 and m.fc1.in_features == 16
    assert any(n.startswith("stage4.branches.0.") for n in res.removed)


@pytest.mark.parametrize(("preset", "n_features", "before", "after"), [
    ("paper", 60, 64_962, 120_642),      # dense coupling: the old-rows x new-columns block counts
    ("authors", 20, 57_282, 100_674),    # isolated: 3 x 64 x 64 = 12,288 fixed zeros are no parameters
])
def test_lcgrnn_paper_growth_of_gru2(preset: str, n_features: int, before: int, after: int) -> None:
    from growsearch.metrics.cost import count_params

    m = create_backbone("lcgrnn", preset)
    assert count_params(m)["total"] == before
    m.grow("gru2", 64, generator=_gen(0))
    assert m.grus[1].hidden_size == 128 and m.grus[2].input_size == 128
    assert isinstance(m.grus[1], nn.GRU)
    assert m.body(torch.randn(2, n_features, 20)).shape == (2, 2)
    assert count_params(m)["total"] == after


@pytest.mark.parametrize("init", [i for i in INITS if i != "net2net"])  # what isolated coupling supports
def test_isolated_gru_growth_old_units_never_read_new_ones(init: str) -> None:
    """With isolated coupling the old units' outputs do not depend on the new units, whatever
    values the trainable entries take; with dense coupling the same perturbation reaches them."""
    from growsearch.errors import ScheduleError
    from growsearch.growth.freeze import fixed_entries

    for preset, isolated in (("tiny_authors", True), ("tiny", False)):
        torch.manual_seed(0)
        m = create_backbone("lcgrnn", preset).eval()
        x = torch.randn(2, 15, 8)  # gru2 input: (B, T, 8 units of gru1)
        with torch.no_grad():
            old, _ = m.grus[1](x)
        m.grow("gru2", 4, init=init, generator=_gen(3))
        fixed = fixed_entries(m).get("grus.1.weight_hh_l0", torch.zeros_like(m.grus[1].weight_hh_l0, dtype=torch.bool))
        assert int(fixed.sum()) == (3 * 8 * 4 if isolated else 0)
        rows = gate_rows(12, torch.arange(8, 12))
        with torch.no_grad():  # the new units' own weights take other values; the free block (dense) too
            m.grus[1].weight_ih_l0[rows] += 0.5
            m.grus[1].weight_hh_l0[rows] += 0.5
            m.grus[1].weight_hh_l0[:, 8:][~fixed[:, 8:]] += 0.5
            new, _ = m.grus[1](x)
        if isolated:
            torch.testing.assert_close(new[..., :8], old, rtol=0, atol=1e-6)
        else:
            assert (new[..., :8] - old).abs().max() > 1e-3
    with pytest.raises(ScheduleError, match="does not support init 'net2net'"):
        create_backbone("lcgrnn", "tiny_authors").grow("gru2", 2, init="net2net", generator=_gen(4))


@pytest.mark.parametrize("init", ["zero_fanout", "random"])
def test_resnet_parallel_growth_feeds_the_next_stages_branches(init: str) -> None:
    torch.manual_seed(0)
    m = create_backbone("resnet18", "tiny")
    m.eval()
    feats = torch.randn(2, 64, 224)
    m.grow("stage2", 3, form="parallel", init="random", generator=_gen(0))
    before = m.body(feats)
    res = m.grow("stage1", 2, form="parallel", init=init, generator=_gen(1))
    assert m.stage2.branches[0].conv1.in_channels == m.stage1.out_channels == 6
    assert "stage2.branches.0.downsample.0.weight" in res.changed
    if init == "zero_fanout":
        torch.testing.assert_close(m.body(feats), before)
    m.shrink("stage1", None)
    assert m.stage2.branches[0].conv1.in_channels == 4
    if init == "zero_fanout":
        torch.testing.assert_close(m.body(feats), before)
