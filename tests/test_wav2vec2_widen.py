"""The paper's wav2vec2-small dropin: one encoder layer widened in place between projectors
(``wav2vec2_widen``, points ``layer{i}.width``). The registry-wide contract tests cover it too."""

from __future__ import annotations

import pytest
import torch

from growsearch.backbones import create_backbone
from growsearch.backbones.wav2vec2_widen import WidenedEncoderLayer
from growsearch.errors import ScheduleError

LAYERS = "wav2vec2.encoder.transformer.layers"


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return create_backbone("wav2vec2_widen", "tiny").eval()


def _wave(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 4000, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_small_preset_layer1_widens_like_the_paper() -> None:
    """256 -> 768 hidden, FFN 512 -> 2048, heads 4 -> 12, projectors 256 -> 768 -> 256."""
    with torch.device("meta"):
        model = create_backbone("wav2vec2_widen", "small")
        res = model.grow("layer1.width", 512, init="random")
    layer = model.wav2vec2.encoder.transformer.layers[1]
    assert isinstance(layer, WidenedEncoderLayer)
    assert tuple(layer.proj_in.weight.shape) == (768, 256) and tuple(layer.proj_out.weight.shape) == (256, 768)
    assert tuple(layer.attention.q_proj.weight.shape) == (768, 768) and layer.attention.num_heads == 12
    assert tuple(layer.feed_forward.intermediate_dense.weight.shape) == (2048, 768)
    assert tuple(layer.feed_forward.output_dense.weight.shape) == (768, 2048)
    assert tuple(layer.layer_norm.weight.shape) == (768,) and tuple(layer.final_layer_norm.weight.shape) == (768,)
    assert model.width("layer1.width") == 768 and model.grown("layer1.width") == 512
    assert model.width("layer1.ffn") == 512 and model.width("layer1.attn") == 256  # widening's units excluded
    assert {f"{LAYERS}.1.proj_in.weight", f"{LAYERS}.1.proj_out.weight"} <= res.added
    assert res.changed[f"{LAYERS}.1.feed_forward.intermediate_dense.weight"].new_shape == (2048, 768)


@pytest.mark.parametrize("init", ["zero_fanout", "net2net"])
def test_function_preserving_widening_preserves_outputs(init: str) -> None:
    model, x = _model(), _wave()
    with torch.no_grad():
        before = model(x)
        model.grow("layer1.width", 64, init=init, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(model(x), before)
    layer = model.wav2vec2.encoder.transformer.layers[1]
    eye = torch.eye(32)
    torch.testing.assert_close(layer.proj_in.weight, torch.cat([eye, eye, eye], 0), rtol=0, atol=0)
    expected_out = torch.cat([eye, 0 * eye, 0 * eye], 1) if init == "zero_fanout" else torch.cat([eye / 3] * 3, 1)
    torch.testing.assert_close(layer.proj_out.weight, expected_out)


def test_random_widening_changes_outputs_and_appended_shrink_restores_them_exactly() -> None:
    model, x = _model(), _wave()
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
        model.grow("layer1.width", 32, init="random", generator=torch.Generator().manual_seed(2))
        assert (model(x) - before).abs().max() > 1e-4
        res = model.shrink("layer1.width", None)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == keys
    assert res.removed == {f"{LAYERS}.1.proj_{s}.{t}" for s in ("in", "out") for t in ("weight", "bias")}
    assert type(model.wav2vec2.encoder.transformer.layers[1]).__name__ == "EncoderLayer"


def test_widenings_are_undone_last_first_and_whole() -> None:
    model = _model()
    g = torch.Generator().manual_seed(0)
    model.grow("layer0.width", 32, init="random", generator=g)
    model.grow("layer0.width", 64, init="zero_fanout", generator=g)
    with pytest.raises(ScheduleError, match=r"does not undo whole widenings \(they added \[32, 64\]"):
        model.shrink("layer0.width", 32)
    with pytest.raises(ScheduleError, match="'magnitude' shrink of a widened layer must remove all 96"):
        model.shrink("layer0.width", 64, rule="magnitude")
    model.shrink("layer0.width", 64)
    assert model.width("layer0.width") == 64
    model.grow("layer0.ffn", 8, generator=g)
    with pytest.raises(ScheduleError, match="ffn/attn grew after its widening; shrink those first"):
        model.shrink("layer0.width", None)
    model.shrink("layer0.ffn", None)
    model.shrink("layer0.width", None)
    assert model.width("layer0.width") == 32


def test_bad_widening_requests_name_the_point_and_value() -> None:
    model = _model()
    with pytest.raises(ScheduleError, match=r"'layer1.width': neurons must be a positive multiple of 32 .*got 16"):
        model.grow("layer1.width", 16)
    with pytest.raises(ScheduleError, match="cannot grow 'parallel'"):
        model.grow("layer1.width", 32, form="parallel")
    with pytest.raises(ScheduleError, match="valid points: .*layer1.width"):
        model.grow("layer1", 32, form="parallel")
