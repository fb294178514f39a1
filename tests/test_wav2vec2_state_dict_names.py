"""The wav2vec2 family's grown layers keep their state-dict names: a checkpoint written before
the layers were built by composition (``ParallelEncoderLayer``, ``WidenedEncoderLayer``,
``LoRALinear`` made by swapping ``__class__``) loads into the composed ones.

``data/wav2vec2_family_state_dict_keys.json`` holds, for each backbone (preset ``tiny``), a list
of growth events and the state-dict keys and shapes, in order, that the code at main f84c514
produced after them (recorded with that code, not with the code under test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchaudio.models.wav2vec2.components import EncoderLayer

from growsearch.backbones import create_backbone
from growsearch.backbones.base import Backbone
from growsearch.backbones.lora import LoRALinear
from growsearch.backbones.wav2vec2 import ParallelEncoderLayer
from growsearch.backbones.wav2vec2_widen import WidenedEncoderLayer

RECORDED = json.loads((Path(__file__).parent / "data" / "wav2vec2_family_state_dict_keys.json").read_text())
LAYERS = "wav2vec2.encoder.transformer.layers"


def _grown(name: str, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    m = create_backbone(name, "tiny")
    for action, point, neurons, form, how in RECORDED[name]["events"]:
        if action == "grow":
            m.grow(point, neurons, form=form, init=how, generator=torch.Generator().manual_seed(1))
        else:
            m.shrink(point, neurons, rule=how)
    return m


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_grown_models_have_the_recorded_state_dict_names_and_shapes(name: str) -> None:
    got = [[k, list(v.shape)] for k, v in _grown(name).state_dict().items()]
    assert got == RECORDED[name]["keys"]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_checkpoint_with_the_recorded_names_loads_strictly(name: str, tmp_path: Path) -> None:
    """A state dict with exactly the recorded names and shapes (as the old code wrote it) loads
    into a model grown by the same events, and every value lands where its name says."""
    g = torch.Generator().manual_seed(7)
    old = {k: torch.randn(shape, generator=g) for k, shape in RECORDED[name]["keys"]}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    m = _grown(name, seed=3)
    m.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, old[k], rtol=0, atol=0)
    with torch.no_grad():
        assert m.eval()(torch.randn(2, 4000, generator=g)).shape == (2, 2)


def test_grown_layers_hold_torchaudios_parts_and_shrink_back_to_plain_classes() -> None:
    """A grown layer has torchaudio's ``EncoderLayer`` parts in their order, then its own; a
    full shrink puts a plain ``EncoderLayer`` / ``nn.Linear`` back in its place."""
    parts = ["attention", "dropout", "layer_norm", "feed_forward", "final_layer_norm"]
    m = _grown("wav2vec2")
    layers = m.get_submodule(LAYERS)
    assert all(type(layer) is ParallelEncoderLayer for layer in layers)
    assert list(layers[0]._modules)[:5] == parts and list(layers[0]._modules)[5:] == ["branches", "proj"]
    m.shrink("layer0", None, rule="appended")
    assert type(layers[0]) is EncoderLayer and list(layers[0]._modules) == parts

    w = _grown("wav2vec2_widen")
    wl = w.get_submodule(LAYERS)
    assert type(wl[0]) is WidenedEncoderLayer and list(wl[0]._modules) == parts + ["proj_in", "proj_out"]
    w.shrink("layer0.ffn", None, rule="appended")
    w.shrink("layer0.width", None, rule="appended")
    assert type(wl[0]) is EncoderLayer and list(wl[0]._modules) == parts

    lo = _grown("wav2vec2_lora")
    q = lo.get_submodule(f"{LAYERS}.0.attention.q_proj")
    assert type(q) is LoRALinear
    lo.shrink("lora", None, rule="appended")
    assert type(lo.get_submodule(f"{LAYERS}.0.attention.q_proj")) is torch.nn.Linear
