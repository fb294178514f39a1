"""LoRA on wav2vec2 (``wav2vec2_lora``, point ``lora``): the forward formula, the trainable
parameter count, function preservation, shrink, and interplay with attention-head growth.
(The registry-wide contract tests in test_backbone_contract.py cover it too.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from growsearch.backbones import create_backbone
from growsearch.backbones.lora import LoRALinear, Wav2Vec2LoRA, add_rank, lora_trainable_formula
from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.freeze import FreezePolicy
from growsearch.schedule import GrowthEvent, GrowthSchedule

LAYERS = "wav2vec2.encoder.transformer.layers"


def _model(seed: int = 0) -> Wav2Vec2LoRA:
    torch.manual_seed(seed)
    return create_backbone("wav2vec2_lora", "tiny")


def _wave(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 4000, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_lora_linear_computes_w_x_plus_scale_b_a_x() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 5)
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    plain = lin
    lin, added = add_rank(lin, 3, scale=2.0, init="random", generator=torch.Generator().manual_seed(1))
    assert isinstance(lin, LoRALinear) and lin.rank == 3 and added == {"lora_A", "lora_B"}
    assert lin.weight is plain.weight and lin.bias is plain.bias  # built around the Linear's own Parameters
    x = torch.randn(4, 6)
    a, bb = lin.lora_A.detach(), lin.lora_B.detach()
    expected = x @ w.T + b + 2.0 * (x @ a.T) @ bb.T
    torch.testing.assert_close(lin(x), expected)
    assert set(dict(lin.named_parameters())) == {"weight", "bias", "lora_A", "lora_B"}


@pytest.mark.parametrize("rank", [1, 8])
def test_trainable_parameters_equal_the_formula(rank: int) -> None:
    """new_only + head: exactly r * (in + out) per adapted Linear (q and v of every layer) + head."""
    model = _model()
    res = model.apply_event(GrowthEvent(point="lora", epoch=0, neurons=rank, init="zero_fanout", freeze="new_only"))
    policy = FreezePolicy.build(model, [res], "new_only", extra_trainable=("head",))
    d, layers = model.embed_dim, model.num_layers
    n_trainable = sum(p.numel() for _, p in policy.trainable_named_parameters())
    formula = lora_trainable_formula([(d, d)] * (2 * layers), rank) + (2 * d + 2)
    assert n_trainable == formula == 2 * layers * rank * 2 * d + 2 * d + 2
    names = {n for n, _ in policy.trainable_named_parameters()}
    assert names == {f"{LAYERS}.{i}.attention.{t}.lora_{m}" for i in range(layers) for t in ("q_proj", "v_proj")
                     for m in "AB"} | {"head.weight", "head.bias"}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == formula


def test_wav2vec2_base_lora_rank8_trains_296450_parameters() -> None:
    with torch.device("meta"):
        model = create_backbone("wav2vec2_lora", "base")
        res = model.grow("lora", 8, init="zero_fanout")
    policy = FreezePolicy.build(model, [res], "new_only", extra_trainable=("head",))
    n = sum(p.numel() for _, p in policy.trainable_named_parameters())
    assert n == 24 * 8 * (768 + 768) + 768 * 2 + 2 == 296_450
    assert model.lora_scale == 16 / 8


def test_zero_fanout_preserves_outputs_and_random_does_not() -> None:
    for init, same in (("zero_fanout", True), ("random", False)):
        model = _model().eval()
        x = _wave()
        with torch.no_grad():
            before = model(x)
            model.grow("lora", 4, init=init, generator=torch.Generator().manual_seed(2))
            after = model(x)
        if same:
            torch.testing.assert_close(after, before, rtol=0, atol=0)
        else:
            assert (after - before).abs().max() > 1e-5


def test_growing_the_rank_again_keeps_the_function() -> None:
    """scale is alpha / lora_rank, fixed: adding zero-initialised components changes nothing."""
    model = _model().eval()
    model.grow("lora", 4, init="random", generator=torch.Generator().manual_seed(2))
    x = _wave()
    with torch.no_grad():
        before = model(x)
        res = model.grow("lora", 4, init="zero_fanout", generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(model(x), before, rtol=1e-6, atol=1e-6)
    assert model.width("lora") == 8
    assert res.changed[f"{LAYERS}.0.attention.q_proj.lora_A"].new_shape == (8, 32)


def test_full_shrink_removes_the_adapters() -> None:
    model = _model().eval()
    keys = set(model.state_dict())
    x = _wave()
    with torch.no_grad():
        before = model(x)
    model.grow("lora", 4, init="random", generator=torch.Generator().manual_seed(2))
    res = model.shrink("lora", None)
    assert set(model.state_dict()) == keys and type(model.wav2vec2.encoder.transformer.layers[0].attention.q_proj) is nn.Linear
    assert res.removed == {f"{LAYERS}.{i}.attention.{t}.lora_{m}" for i in range(2) for t in ("q_proj", "v_proj") for m in "AB"}
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_magnitude_shrink_keeps_the_strongest_components() -> None:
    model = _model()
    model.grow("lora", 3, init="random", generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # make component 1 negligible everywhere
        for _, lin in model.lora_linears():
            lin.lora_B[:, 1] = 1e-6
    kept = {n: (lin.lora_A.detach()[[0, 2]].clone(), lin.lora_B.detach()[:, [0, 2]].clone()) for n, lin in model.lora_linears()}
    model.shrink("lora", 1, rule="magnitude")
    for n, lin in model.lora_linears():
        torch.testing.assert_close(lin.lora_A, kept[n][0], rtol=0, atol=0)
        torch.testing.assert_close(lin.lora_B, kept[n][1], rtol=0, atol=0)


def test_attention_heads_grown_after_lora_pad_the_adapters() -> None:
    model = _model().eval()
    model.grow("lora", 4, init="random", generator=torch.Generator().manual_seed(2))
    x = _wave()
    with torch.no_grad():
        before = model(x)
        res = model.grow("layer0.attn", 16, init="zero_fanout", generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    q = model.wav2vec2.encoder.transformer.layers[0].attention.q_proj
    assert q.lora_B.shape == (48, 4) and torch.equal(q.lora_B[32:], torch.zeros(16, 4))
    assert res.changed[f"{LAYERS}.0.attention.q_proj.lora_B"].new_shape == (48, 4)
    model.shrink("layer0.attn", None)
    assert q.lora_B.shape == (32, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_bad_lora_requests_are_schedule_and_config_errors() -> None:
    model = _model()
    with pytest.raises(ScheduleError, match="does not support init 'net2net'; it supports random, zero_fanout"):
        model.grow("lora", 4, init="net2net")
    with pytest.raises(ScheduleError, match="cannot grow 'parallel'"):
        model.grow("lora", 4, form="parallel")
    with pytest.raises(ScheduleError, match="cannot shrink .lora.: nothing was grown there before"):
        model.shrink("lora", 1)
    with pytest.raises(ConfigError, match="lora_rank must be a positive integer, got 0"):
        create_backbone("wav2vec2_lora", "tiny", lora_rank=0)
    with pytest.raises(ConfigError, match="lora_alpha"):
        create_backbone("wav2vec2_lora", "tiny", lora_alpha=-1)


def test_lora_checkpoint_replays() -> None:
    model = _model()
    model.apply_event(GrowthEvent(point="lora", epoch=0, neurons=4, init="random"), generator=torch.Generator().manual_seed(0))
    fresh = _model(seed=5)
    fresh.replay(model.history)
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(_wave()), model(_wave()))


def test_lora_preset_schedule_validates_against_the_lora_backbone() -> None:
    sched = GrowthSchedule.of([{"point": "lora", "epoch": 0, "neurons": 8, "init": "zero_fanout", "freeze": "new_only"}])
    sched.validate_for(_model().growth_points(), 3)
    with pytest.raises(ScheduleError, match="unknown growth point 'lora'"):
        sched.validate_for(create_backbone("wav2vec2", "tiny").growth_points(), 3)
