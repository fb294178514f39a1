"""The wav2vec2 backbone: presets, growth surgery (every point kind x init), shrink, pretrained weights."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
import torch
import torchaudio

from growsearch.backbones import create_backbone
from growsearch.backbones.pretrained import load_pretrained
from growsearch.backbones.wav2vec2 import ParallelEncoderLayer, Wav2Vec2Backbone
from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.surgery import SurgeryResult
from growsearch.schedule import GrowthEvent
from growsearch.vocabulary import INITS

KINDS = ("ffn", "attn", "parallel")


def _tiny(**kw) -> Wav2Vec2Backbone:
    torch.manual_seed(0)
    return create_backbone("wav2vec2", "tiny", **kw).eval()


def _wave(b: int = 2, n: int = 16000) -> torch.Tensor:
    return torch.randn(b, n, generator=torch.Generator().manual_seed(1))


def _point(kind: str, layer: int = 1) -> tuple[str, str]:
    if kind == "parallel":
        return f"layer{layer}", "parallel"
    return f"layer{layer}.{kind}", "inplace"


def _check_result(model: torch.nn.Module, before: dict[str, torch.Tensor], res: SurgeryResult, init: str) -> None:
    """Every changed name exists with its new shape; surviving entries carry old values (up to net2net scaling)."""
    params = dict(model.named_parameters())
    for name, ch in res.changed.items():
        assert name in params, name
        assert tuple(params[name].shape) == ch.new_shape, name
        assert tuple(before[name].shape) == ch.old_shape, name
        if init != "net2net" or not name.endswith(("output_dense.weight", "out_proj.weight", "proj.weight")):
            kept = ch.carry(before[name])
            mask = ~ch.new_mask()
            torch.testing.assert_close(params[name].detach()[mask], kept[mask])
    for name in res.added:
        assert name in params, name
        assert name not in before, name
    for name in res.removed:
        assert name not in params, name
    # nothing else changed shape
    for name, p in params.items():
        if name in before and name not in res.changed:
            assert p.shape == before[name].shape, name


def test_presets_and_tiny_forward_speed() -> None:
    m = _tiny()
    x = _wave()
    times = []
    for _ in range(5):  # CPU time, best of a few runs: the machine is shared with other jobs
        t0 = time.process_time()
        with torch.no_grad():
            y = m(x)
        times.append(time.process_time() - t0)
    assert y.shape == (2, 2) and torch.isfinite(y).all()
    assert min(times) < 0.5, times
    assert Wav2Vec2Backbone.input_kind == "raw"


def test_base_preset_is_torchaudio_wav2vec2_base() -> None:
    with torch.device("meta"):
        m = create_backbone("wav2vec2", "base")
        ref = torchaudio.models.wav2vec2_base()
    n_ref = sum(p.numel() for p in ref.parameters())
    n = sum(p.numel() for p in m.parameters())
    assert n == n_ref + 768 * 2 + 2
    assert 94e6 < n < 96e6
    assert [k for k in m.wav2vec2.state_dict()] == [k for k in ref.state_dict()]
    with torch.device("meta"):
        s = create_backbone("wav2vec2", "small")
    att = s.wav2vec2.encoder.transformer.layers[0].attention
    assert (att.embed_dim, att.num_heads, len(s.wav2vec2.encoder.transformer.layers)) == (256, 4, 12)
    assert s.wav2vec2.encoder.transformer.layers[0].feed_forward.intermediate_dense.out_features == 512


def test_growth_points() -> None:
    m = _tiny()
    pts = m.growth_points()
    assert set(pts) == {f"layer{i}{s}" for i in range(2) for s in ("", ".ffn", ".attn")}
    assert pts["layer0.attn"].step == 16 and pts["layer0.attn"].base_width == 32
    assert pts["layer0.ffn"].base_width == 64 and pts["layer0"].forms == ("parallel",)
    for name in pts:
        assert m.grown(name) == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("init", INITS)
def test_grow_every_point_kind_and_init(kind: str, init: str) -> None:
    m = _tiny()
    x = _wave()
    point, form = _point(kind)
    step = m.growth_points()[point].step
    n = 2 * step if kind != "parallel" else step
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    with torch.no_grad():
        y0 = m(x)
    res = m.grow(point, n, form=form, init=init, generator=torch.Generator().manual_seed(3))
    assert m.grown(point) == n and res.action == "grow" and res.neurons == n
    _check_result(m, before, res, init)
    with torch.no_grad():
        y1 = m(x)
    if init in ("zero_fanout", "net2net"):
        torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    else:
        assert not torch.allclose(y1, y0, atol=1e-6)
    # the grown model trains: every parameter gets a gradient
    m.train()
    m(x).sum().backward()
    missing = [k for k, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_attention_growth_updates_heads() -> None:
    m = _tiny()
    att = m.wav2vec2.encoder.transformer.layers[0].attention
    m.grow("layer0.attn", 48, init="zero_fanout")
    assert att.num_heads == 5 and att.head_dim == 16
    assert att.q_proj.weight.shape == (80, 32) and att.out_proj.weight.shape == (32, 80)
    assert m.width("layer0.attn") == 80


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("init", [i for i in INITS if i != "net2net"])  # net2net: no appended shrink
def test_shrink_appended_restores_the_parent(kind: str, init: str) -> None:
    m = _tiny()
    x = _wave()
    point, form = _point(kind, 0)
    step = m.growth_points()[point].step
    names = dict(m.named_parameters()).keys()
    with torch.no_grad():
        y0 = m(x)
    m.grow(point, 2 * step, form=form, init=init)
    res = m.shrink(point, None, rule="appended")
    assert res.action == "shrink" and m.grown(point) == 0
    assert dict(m.named_parameters()).keys() == names
    with torch.no_grad():
        torch.testing.assert_close(m(x), y0)


@pytest.mark.parametrize("kind", KINDS)
def test_magnitude_shrink_drops_zero_units(kind: str) -> None:
    """After zero-fan-out growth the new units have zero importance; magnitude removes them."""
    m = _tiny()
    x = _wave()
    point, form = _point(kind, 0)
    step = m.growth_points()[point].step
    with torch.no_grad():
        y0 = m(x)
    m.grow(point, step, form=form, init="zero_fanout")
    m.shrink(point, step, rule="magnitude")
    with torch.no_grad():
        torch.testing.assert_close(m(x), y0)


def test_partial_parallel_shrink_renames_branches() -> None:
    m = _tiny()
    m.grow("layer0", 64, form="parallel", init="zero_fanout")
    layer = m.wav2vec2.encoder.transformer.layers[0]
    assert isinstance(layer, ParallelEncoderLayer) and len(layer.branches) == 2
    with torch.no_grad():
        layer.proj.weight[:, 32:64] = 1.0  # branch 0 important, branch 1 has a zero block
    res = m.shrink("layer0", 32, rule="magnitude")
    assert len(layer.branches) == 1 and layer.proj.weight.shape == (32, 64)
    assert not res.added and all(".branches.1." in n for n in res.removed)
    assert m.width("layer0") == 64


def test_net2net_duplicates_units_and_splits_fanout() -> None:
    m = _tiny()
    ff = m.wav2vec2.encoder.transformer.layers[0].feed_forward
    w_in = ff.intermediate_dense.weight.detach().clone()
    w_out = ff.output_dense.weight.detach().clone()
    m.grow("layer0.ffn", 1, init="net2net", generator=torch.Generator().manual_seed(0))
    new_row = ff.intermediate_dense.weight[64].detach()
    src = int(torch.nonzero((w_in == new_row).all(1))[0])
    torch.testing.assert_close(ff.output_dense.weight[:, 64].detach(), w_out[:, src] / 2)
    torch.testing.assert_close(ff.output_dense.weight[:, src].detach(), w_out[:, src] / 2)


def test_bad_growth_requests() -> None:
    m = _tiny()
    with pytest.raises(ScheduleError, match="multiple of 16"):
        m.grow("layer0.attn", 5)
    with pytest.raises(ScheduleError, match="valid points"):
        m.grow("layer9.ffn", 4)
    with pytest.raises(ScheduleError, match="supports parallel"):
        m.grow("layer0", 32, form="inplace")
    with pytest.raises(ScheduleError, match="supports inplace"):
        m.grow("layer0.ffn", 4, form="parallel")
    with pytest.raises(ScheduleError, match="nothing was grown there before"):
        m.shrink("layer0.ffn", 4)
    with pytest.raises(ScheduleError, match="multiple of 32"):
        m.grow("layer1", 48, form="parallel")


@pytest.mark.parametrize("kw,match", [({"num_heads": 3}, "num_heads 3"), ({"embed_dim": 0}, "embed_dim"),
                                      ({"conv_layers": [[32, 10]]}, "conv_layers"), ({"nope": 1}, "bad option")])
def test_bad_config(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_backbone("wav2vec2", "tiny", **kw)


def test_replay_then_load_state_dict() -> None:
    m = _tiny()
    g = torch.Generator().manual_seed(0)
    for ev in (GrowthEvent(point="layer0.ffn", epoch=1, neurons=8, init="net2net"),
               GrowthEvent(point="layer1.attn", epoch=1, neurons=16),
               GrowthEvent(point="layer1", epoch=2, neurons=32, form="parallel"),
               GrowthEvent(point="layer0.ffn", epoch=3, action="shrink", neurons=4, rule="magnitude")):
        m.apply_event(ev, generator=g)
    fresh = _tiny()
    fresh.replay(m.history)
    fresh.load_state_dict(m.state_dict())
    x = _wave()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), m(x))


# ---- pretrained weights --------------------------------------------------------------

def _to_fairseq(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchaudio keys -> fairseq wav2vec2 keys (inverse of torchaudio's import_fairseq map)."""
    import re

    out = {}
    for k, v in sd.items():
        for pat, rep in (
            (r"feature_extractor\.conv_layers\.0\.layer_norm\.", "feature_extractor.conv_layers.0.2."),
            (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
            (r"encoder\.feature_projection\.projection\.", "post_extract_proj."),
            (r"encoder\.feature_projection\.layer_norm\.", "layer_norm."),
            (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
            (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
            (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
            (r"encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
            (r"encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
            (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
            (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
            (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
            (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
        ):
            if re.match(pat, k):
                k = re.sub(pat, rep, k)
                break
        out[k] = v
    out["quantizer.vars"] = torch.zeros(3)
    return out


def _to_huggingface(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        k = k.replace("encoder.feature_projection.", "feature_projection.").replace("encoder.transformer.", "encoder.")
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        out["wav2vec2." + k] = v
    out["lm_head.weight"] = torch.zeros(5, 32)
    out["wav2vec2.masked_spec_embed"] = torch.zeros(32)
    return out


@pytest.mark.parametrize("fmt", ["torchaudio", "growsearch", "fairseq", "fairseq-wrapped", "huggingface"])
def test_pretrained_roundtrip(tmp_path: Path, fmt: str) -> None:
    src = _tiny()
    sd = src.wav2vec2.state_dict()
    data = {"torchaudio": sd, "growsearch": src.state_dict(), "fairseq": _to_fairseq(sd),
            "fairseq-wrapped": {"model": _to_fairseq(sd)}, "huggingface": _to_huggingface(sd)}[fmt]
    path = tmp_path / "w.pt"
    torch.save(data, path)
    torch.manual_seed(123)
    dst = create_backbone("wav2vec2", "tiny", pretrained=str(path)).eval()
    x = _wave()
    with torch.no_grad():
        torch.testing.assert_close(dst.wav2vec2(x)[0], src.wav2vec2(x)[0])
    info = load_pretrained(_tiny(), path)
    assert info["format"] == fmt.split("-")[0] and info["loaded"] == len(sd)


def test_pretrained_bad_files(tmp_path: Path) -> None:
    m = _tiny()
    with pytest.raises(ConfigError, match="no such file"):
        load_pretrained(m, tmp_path / "missing.pt")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ConfigError, match=r"notes\.txt: not a torch checkpoint"):
        load_pretrained(m, txt)
    unsafe = tmp_path / "cfg.pt"
    torch.save({"args": argparse.Namespace(a=1), "model": {}}, unsafe)
    with pytest.raises(ConfigError, match=r"cfg\.pt: not a torch checkpoint readable with weights_only=True"):
        load_pretrained(m, unsafe)
    other = tmp_path / "other.pt"
    torch.save(create_backbone("wav2vec2", "tiny", embed_dim=16, num_heads=2).wav2vec2.state_dict(), other)
    with pytest.raises(ConfigError, match=r"other\.pt: does not fit .*shape mismatches: feature_extractor|other\.pt: does not fit .*encoder"):
        load_pretrained(m, other)
    sd = m.wav2vec2.state_dict()
    del sd["encoder.transformer.layers.1.attention.q_proj.bias"]
    sd["encoder.transformer.layers.7.attention.q_proj.bias"] = torch.zeros(32)
    partial = tmp_path / "partial.pt"
    torch.save(sd, partial)
    with pytest.raises(ConfigError, match=r"missing from the file: encoder\.transformer\.layers\.1\.attention\.q_proj\.bias"
                                          r".*unexpected keys: encoder\.transformer\.layers\.7"):
        load_pretrained(m, partial)
    empty = tmp_path / "empty.pt"
    torch.save({"step": 3}, empty)
    with pytest.raises(ConfigError, match="expected a state dict|no tensors"):
        load_pretrained(m, empty)


# ---- the authors' options: MLP head, learned time masking, layerdrop ---------------------------
def test_authors_presets_count_like_hugging_face_models() -> None:
    """base/small + the authors' MLP head (D->256->ReLU->Dropout->2) + masked_spec_embed (D)."""
    from growsearch.metrics.cost import count_params

    assert count_params(create_backbone("wav2vec2", "base_authors"))["total"] == 94_569_090
    small = create_backbone("wav2vec2", "small_authors")
    assert count_params(small)["total"] == 11_249_794
    assert isinstance(small.head[0], torch.nn.Dropout) and small.head[1].out_features == 256  # leading dropout (-small)
    assert small.wav2vec2.encoder.transformer.layer_drop == 0.1
    assert tuple(small.masked_spec_embed.shape) == (256,)


def test_time_masking_replaces_spans_by_the_embedding_only_in_training() -> None:
    m = _tiny(head="mlp", head_hidden=8, mask_time_prob=0.3, mask_time_length=3)
    with torch.no_grad():
        m.masked_spec_embed.fill_(7.0)
    x = torch.randn(4, 40, 32)
    torch.manual_seed(0)
    y = m._mask_time(x)
    masked = (y == 7.0).all(-1)  # (B, T)
    assert torch.equal(y[~masked], x[~masked])
    for row in masked:  # max(2, int(0.3 * 40 / 3 + U)) = 4 or 5 spans of 3 frames, overlaps allowed
        n = int(row.sum())
        assert 3 <= n <= 15
        starts = [t for t in range(40) if row[t] and (t == 0 or not row[t - 1])]
        assert all(bool(row[s:s + 3].all()) for s in starts)
    wave = _wave()
    m.eval()
    with torch.no_grad():
        a, b = m(wave), m(wave)
    torch.testing.assert_close(a, b)  # eval: no masking, deterministic
    m.train()
    torch.manual_seed(1)
    out = m(wave)
    out.sum().backward()
    assert m.masked_spec_embed.grad is not None and m.masked_spec_embed.grad.abs().sum() > 0


def test_masked_spec_embed_loads_from_a_hugging_face_file(tmp_path: Path) -> None:
    src = _tiny()
    data = _to_huggingface(src.wav2vec2.state_dict())
    data["wav2vec2.masked_spec_embed"] = torch.arange(32, dtype=torch.float32)
    torch.save(data, tmp_path / "hf.pt")
    dst = create_backbone("wav2vec2", "tiny", pretrained=str(tmp_path / "hf.pt"), mask_time_prob=0.05)
    assert torch.equal(dst.masked_spec_embed.detach(), torch.arange(32, dtype=torch.float32))


def test_layerdrop_skips_layers_only_in_training() -> None:
    m = _tiny(layer_drop=0.999)
    wave = _wave()
    with torch.no_grad():
        ref = m(wave)
        m.train()
        dropped = m(wave)
        m.eval()
        again = m(wave)
    torch.testing.assert_close(again, ref)
    assert not torch.allclose(dropped, ref)


@pytest.mark.parametrize(("kw", "match"), [({"head": "deep"}, "head 'deep' is not one of linear, mlp"),
                                           ({"mask_time_prob": 1.5}, "mask_time_prob must be in")])
def test_bad_authors_options(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_backbone("wav2vec2", "tiny", **kw)
