"""Parameter and FLOP counting against hand formulas (2 x multiply-adds)."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from growsearch.backbones import create_backbone, list_backbones
from growsearch.metrics.cost import _CUSTOM, SAMPLE_RATE, count_flops, count_params, train_flops_per_sample


class Framer(nn.Module):
    """``(B, samples)`` -> ``(B, frames, width)`` by reshaping (no FLOPs)."""

    def __init__(self, width: int = 160) -> None:
        super().__init__()
        self.width = width

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave.reshape(wave.shape[0], -1, self.width)


class Toy(nn.Module):
    """A backbone-shaped module: ``frontend`` + ``body``."""

    def __init__(self, body: nn.Module, frontend: nn.Module | None = None) -> None:
        super().__init__()
        self.frontend = frontend or Framer()
        self.net = body

    def body(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out


class Attn(nn.Module):
    """Plain SDPA over ``heads`` heads of ``(B, T, heads * d)`` input split from the frames."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q = x.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
        return nn.functional.scaled_dot_product_attention(q, q, q)


T, F = 100, 160  # 1 s of 16 kHz audio -> 100 frames of 160


def test_count_params_exact() -> None:
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5, bias=False))
    assert count_params(m) == {"total": 3 * 4 + 4 + 4 * 5, "trainable": 36}
    m[0].weight.requires_grad_(False)
    assert count_params(m) == {"total": 36, "trainable": 24}
    shared = nn.Linear(2, 2)
    assert count_params(nn.Sequential(shared, shared))["total"] == 6


def test_linear() -> None:
    assert count_flops(Toy(nn.Linear(F, 7))) == 2 * T * F * 7
    assert count_flops(Toy(nn.Linear(F, 7)), seconds=2.5) == 2 * 250 * F * 7


def test_conv2d() -> None:
    class To2d(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w.reshape(w.shape[0], 1, T, F)

    conv = nn.Conv2d(1, 4, 3, padding=1)
    assert count_flops(Toy(conv, To2d())) == 2 * 1 * 4 * 3 * 3 * T * F
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 6, 5, stride=2))
    h2, w2 = (T - 5) // 2 + 1, (F - 5) // 2 + 1
    assert count_flops(Toy(strided, To2d())) == 2 * 4 * 9 * T * F + 2 * 4 * 6 * 25 * h2 * w2


@pytest.mark.parametrize("layers,bidir", [(1, False), (2, False), (2, True)])
def test_gru(layers: int, bidir: bool) -> None:
    h = 12
    gru = nn.GRU(F, h, num_layers=layers, batch_first=True, bidirectional=bidir)
    dirs = 2 if bidir else 1
    expected = 0
    inp = F
    for _ in range(layers):
        expected += dirs * 2 * T * 3 * h * (inp + h)  # input and recurrent products, 3 gates
        inp = h * dirs
    assert count_flops(Toy(gru)) == expected
    # ... and it is what torch itself counts when the real GRU runs on the CPU
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as c:
        gru(torch.zeros(1, T, F))
    assert c.get_total_flops() == expected


def test_lstm_and_unbatched_rnn() -> None:
    lstm = nn.LSTM(F, 8, batch_first=True)
    assert count_flops(Toy(lstm)) == 2 * T * 4 * 8 * (F + 8)

    class Unbatched(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w.reshape(T, F)

    rnn = nn.RNN(F, 5)
    assert count_flops(Toy(rnn, Unbatched())) == 2 * T * 5 * (F + 5)


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_is_counted(heads: int) -> None:
    # Q K^T and A V: 2 * 2 * heads * T^2 * head_dim, head_dim * heads = F
    assert count_flops(Toy(Attn(heads))) == 2 * 2 * T * T * F


def test_attention_cpu_kernel_formula_registered() -> None:
    """On a real CPU tensor SDPA runs a fused kernel that torch counts as 0; ours counts it."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 4, T, F // 4)
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as c:
        nn.functional.scaled_dot_product_attention(x, x, x)
    assert c.get_total_flops() == 2 * 2 * T * T * F


def _conv_frames(samples: int, convs: list[tuple[int, int, int]]) -> list[int]:
    out = []
    for _, k, s in convs:
        samples = (samples - k) // s + 1
        out.append(samples)
    return out


def _wav2vec2_formula(model, samples: int) -> int:
    """Sum of per-layer hand formulas for a (possibly grown) wav2vec2 backbone."""
    w = model.wav2vec2
    convs = [(b.conv.out_channels, b.kernel_size, b.stride) for b in w.feature_extractor.conv_layers]
    frames = _conv_frames(samples, convs)
    total, cin = 0, 1
    for (cout, k, _), t in zip(convs, frames):
        total += 2 * cin * cout * k * t
        cin = cout
    t = frames[-1]
    d = model.embed_dim
    total += 2 * t * cin * d  # feature projection
    pos = w.encoder.transformer.pos_conv_embed
    kp, g = pos.kernel_size, pos.conv.groups
    t_pos = t + 2 * (kp // 2) - kp + 1
    total += 2 * (d // g) * d * kp * t_pos

    def layer_flops(layer) -> int:
        att, ff = layer.attention, layer.feed_forward
        a = att.num_heads * att.head_dim
        f = ff.intermediate_dense.out_features
        return 3 * 2 * t * d * a + 2 * t * a * d + 2 * 2 * t * t * a + 2 * 2 * t * d * f

    for layer in w.encoder.transformer.layers:
        total += layer_flops(layer)
        for b in getattr(layer, "branches", []):
            total += layer_flops(b)
        if hasattr(layer, "proj"):
            total += 2 * t * layer.proj.in_features * d
    return total + 2 * d * 2  # head


def test_tiny_wav2vec2_matches_per_layer_formulas_and_growth_deltas() -> None:
    torch.manual_seed(0)
    m = create_backbone("wav2vec2", "tiny")
    f0 = count_flops(m)
    assert f0 == _wav2vec2_formula(m, SAMPLE_RATE)
    t = 49  # frames of 1 s with the 320-sample conv stack
    d = 32
    m.grow("layer0.ffn", 10, init="zero_fanout")
    f1 = count_flops(m)
    assert f1 - f0 == 2 * 2 * t * d * 10
    m.grow("layer1.attn", 16, init="net2net")
    f2 = count_flops(m)
    assert f2 - f1 == 4 * 2 * t * d * 16 + 2 * 2 * t * t * 16
    m.grow("layer1", 32, form="parallel", init="random")
    f3 = count_flops(m)
    one_layer = 4 * 2 * t * d * d + 2 * 2 * t * t * d + 2 * 2 * t * d * 64
    assert f3 - f2 == one_layer + 2 * t * 2 * d * d
    assert f3 == _wav2vec2_formula(m, SAMPLE_RATE)
    m.shrink("layer1", None)
    m.shrink("layer1.attn", None)
    m.shrink("layer0.ffn", None)
    assert count_flops(m) == f0
    assert count_flops(m, seconds=2.0) == _wav2vec2_formula(m, 2 * SAMPLE_RATE)


def test_train_flops_convention() -> None:
    m = Toy(nn.Linear(F, 7))
    assert train_flops_per_sample(m) == 3 * count_flops(m)


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_meta_count_equals_real_cpu_count(name: str) -> None:
    """The meta copy counts exactly what the real model computes (GRU, attention included)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    m = create_backbone(name, "tiny").eval()
    f = count_flops(m)
    assert f > 0
    frontend = copy.deepcopy(m.frontend)
    for mod in frontend.modules():  # length-aware (README, cost): the frames the audio gives, no fixed-size pad
        if getattr(mod, "pad_frames", None) is not None:
            mod.pad_frames = None
    with torch.no_grad():
        feats = frontend(torch.zeros(1, SAMPLE_RATE))
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as c:
            m.body(feats)
    assert c.get_total_flops() == f
    # the model itself is untouched (still on the CPU, same parameters)
    assert all(p.device.type == "cpu" for p in m.parameters())


@pytest.mark.parametrize("name", list_backbones())
def test_count_is_fast_for_tiny_models(name: str) -> None:
    m = create_backbone(name, "tiny")
    count_flops(m)
    times = []
    for _ in range(3):
        t0 = time.process_time()
        count_flops(m)
        times.append(time.process_time() - t0)
    assert min(times) < 0.5, times  # ~10-30 ms on an idle 2-core machine; the box is shared


def test_feature_shape_cache_follows_frontend_configuration() -> None:
    from growsearch.data.features import LogMel
    from growsearch.metrics.cost import feature_shape

    assert feature_shape(Toy(nn.Linear(F, 2), Framer(160))) == (1, T, 160)
    assert feature_shape(Toy(nn.Linear(F, 2), Framer(320))) == (1, 50, 320)
    # length-aware (README, cost): a fixed-size pad is not counted
    assert feature_shape(Toy(nn.Identity(), LogMel(pad_frames=224)))[-1] == 32
    assert feature_shape(Toy(nn.Identity(), LogMel(pad_frames=224)), seconds=10.0)[-1] == 313
    assert feature_shape(Toy(nn.Identity(), LogMel(pad_frames=None)))[-1] == 32  # 16000 / 512 + 1
    assert feature_shape(Toy(nn.Identity(), LogMel(pad_frames=None)), seconds=2.0)[-1] == 63
