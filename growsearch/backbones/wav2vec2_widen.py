"""Widen one wav2vec2 encoder layer in place, with projectors: the paper's wav2vec2-small dropin.

The paper widens encoder layer index 1 of wav2vec2-small from hidden 256 to 768 (FFN 512 -> 2048,
heads 4 -> 12) with a 256 -> 768 projector before it. The ``wav2vec2_widen`` backbone is the
``wav2vec2`` backbone (same presets and options) whose growth points are, per encoder layer ``i``,
``layer{i}.ffn`` and ``layer{i}.attn`` (as in ``wav2vec2``) and ``layer{i}.width``: widening the
layer's hidden width by ``neurons`` (a multiple of the model width ``D``; one block = ``D``).
The widened layer (:class:`WidenedEncoderLayer`) computes::

    x (B, T, D) -> proj_in: Linear(D, W) -> the W-wide encoder layer -> proj_out: Linear(W, D)

so the layers around it keep width ``D``. The paper names only the projector before the layer;
something must map back to ``D`` for the next layer, so ``proj_out`` is added (state this when
comparing parameter counts). Per block of ``D`` added units, the layer gains the heads it had
(``heads * (1 + k)``, head_dim unchanged) and ``ffn_per_unit`` FFN units per hidden unit added
(option ``widen_ffn_per_unit``, default 3: 512 -> 2048 for 256 -> 768, as the paper).

Initialisers:

- ``random`` (the paper): old weights in the top-left blocks of the larger tensors, new entries
  PyTorch's default ``Linear`` init, new LayerNorm entries weight 1 / bias 0; ``proj_in`` and
  ``proj_out`` default-initialised. Not function-preserving.
- ``zero_fanout``: function-preserving. ``proj_in`` = ``[I; I; ...]`` replicates the input into
  every block; the new blocks are block-diagonal copies of the layer (their own heads, FFN units
  and LayerNorm entries), so the LayerNorm statistics over ``W`` equal those over ``D``; FFN units
  beyond the copies get a random fan-in and a zero fan-out; ``proj_out`` = ``[I | 0 | ...]``
  (the new units' fan-out is zero).
- ``net2net``: as ``zero_fanout`` but ``proj_out`` splits the first block's outgoing weights
  evenly over it and its copies (``[I/(k+1) | I/(k+1) | ...]``).

The replication is exact when widening from the base width (a second widening replicates the
original block only). Shrinking (``appended``) truncates every tensor back to its shape before the
widening (and drops the projectors at the base width): widenings are undone last-in first-out and
whole (a ``magnitude`` shrink is accepted only when it removes everything grown, where it is the
same); an ``ffn``/``attn`` growth of the same layer made after a widening must be shrunk first.
``layer{i}.ffn`` / ``layer{i}.attn`` widths exclude the units a widening added.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchaudio.models.wav2vec2.components import EncoderLayer

from growsearch.backbones.base import GrowthPoint
from growsearch.backbones.registry import register_backbone
from growsearch.backbones.wav2vec2 import _LAYERS, PRESETS, Wav2Vec2Backbone, init_encoder_layer, plain_encoder_layer
from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.init import default_uniform
from growsearch.growth.surgery import SurgeryResult, TensorChange
from growsearch.growth.widen import narrow_in, narrow_out, set_param
from growsearch.vocabulary import INITS

__all__ = ["WidenedEncoderLayer", "Wav2Vec2Widen"]

#: the layer's tensors that widening resizes (relative to the layer)
_LINEARS = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
            "feed_forward.intermediate_dense", "feed_forward.output_dense")
_NORMS = ("layer_norm", "final_layer_norm")


class WidenedEncoderLayer(EncoderLayer):
    """An encoder layer of width ``W`` between ``proj_in`` (``D -> W``) and ``proj_out`` (``W -> D``).

    Built from the original layer's parts (:func:`~growsearch.backbones.wav2vec2.init_encoder_layer`:
    ``attention``, ``feed_forward``, ``layer_norm``, ``final_layer_norm``, shared), so parameter
    names stay valid, plus ``proj_in``/``proj_out``. Shapes: ``(batch, frames, D)`` -> ``(batch, frames, D)``.
    """

    def __init__(self, main: EncoderLayer, proj_in: nn.Linear, proj_out: nn.Linear) -> None:
        init_encoder_layer(self, main)
        self.proj_in = proj_in
        self.proj_out = proj_out

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` and the rest of ``EncoderLayer.forward``'s arguments (masks, position bias)."""
        y, position_bias = super().forward(self.proj_in(x), *args, **kwargs)
        return self.proj_out(y), position_bias


def _shapes(layer: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in layer.named_parameters()}


def _empty_linear(in_features: int, out_features: int, like: torch.Tensor) -> nn.Linear:
    """An uninitialised ``Linear`` on ``like``'s device and dtype (built on the meta device: no draws)."""
    return nn.Linear(in_features, out_features, device="meta").to_empty(device=like.device).to(dtype=like.dtype)


def _truncate(lin: nn.Linear, rows: int, cols: int) -> None:
    """Keep the first ``rows`` output units and ``cols`` input columns of ``lin``."""
    narrow_out(lin, torch.arange(rows))
    narrow_in(lin, torch.arange(cols))


class Wav2Vec2Widen(Wav2Vec2Backbone):
    """The ``wav2vec2`` backbone with ``layer{i}.width`` growth points (see the module docstring).

    Args:
        widen_ffn_per_unit: FFN units added per hidden unit a widening adds (the paper: 3).
        **kwargs: the :class:`~growsearch.backbones.wav2vec2.Wav2Vec2Backbone` options.

    Raises:
        ConfigError: a non-positive ``widen_ffn_per_unit`` or a bad wav2vec2 option.
    """

    def __init__(self, *, widen_ffn_per_unit: int = 3, **kwargs: Any) -> None:
        if not isinstance(widen_ffn_per_unit, int) or isinstance(widen_ffn_per_unit, bool) or widen_ffn_per_unit < 0:
            raise ConfigError(f"wav2vec2_widen: widen_ffn_per_unit must be a non-negative integer, got {widen_ffn_per_unit!r}")
        super().__init__(**kwargs)
        self.widen_ffn_per_unit = widen_ffn_per_unit
        #: per layer, a stack of widenings: shapes before/after, units added to ffn/attn, blocks
        self._widen_log: dict[int, list[dict[str, Any]]] = {}

    # ---- points ----------------------------------------------------------------------
    def growth_points(self) -> dict[str, GrowthPoint]:
        pts = {k: v for k, v in super().growth_points().items() if "." in k}  # no parallel-layer points
        for i in range(self.num_layers):
            pts[f"layer{i}.width"] = GrowthPoint(
                f"layer{i}.width", self.embed_dim, forms=("inplace",), inits=INITS, unit="hidden unit",
                step=self.embed_dim,
                description=f"hidden width of encoder layer {i}, with {self.embed_dim}->W / W->{self.embed_dim} projectors "
                f"(heads and {self.widen_ffn_per_unit} FFN units per hidden unit grow with it)",
            )
        return pts

    def _index(self, point: str) -> tuple[int, str]:
        pts = self.growth_points()
        if point not in pts:
            raise ScheduleError(f"unknown growth point {point!r}; valid points: {', '.join(sorted(pts))}")
        head, _, kind = point.partition(".")
        return int(head[len("layer"):]), kind

    def _added(self, i: int, key: str) -> int:
        return sum(e[key] for e in self._widen_log.get(i, []))

    def width(self, point: str) -> int:
        i, kind = self._index(point)
        layer = self._layer(i)
        if kind == "width":
            return layer.attention.embed_dim
        w = super().width(point)
        return w - self._added(i, "ffn" if kind == "ffn" else "attn")

    # ---- grow ------------------------------------------------------------------------
    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        """Grow ``point``; ``layer{i}.width`` widens layer ``i`` by ``neurons`` (a multiple of ``D``,
        checked by :meth:`Backbone.grow`)."""
        i, kind = self._index(point)
        if kind != "width":
            return super()._grow(point, neurons, form=form, init=init, generator=generator)
        with torch.no_grad():
            return self._widen(i, neurons // self.embed_dim, init, generator)

    def _widen(self, i: int, k: int, init: str, generator: torch.Generator | None) -> SurgeryResult:
        d = self.embed_dim
        layers = self.wav2vec2.encoder.transformer.layers
        layer: EncoderLayer = layers[i]
        prefix = f"{_LAYERS}.{i}."
        before = _shapes(layer)
        att, ff = layer.attention, layer.feed_forward
        w_old = att.embed_dim
        a_old = att.num_heads * att.head_dim  # attention width (rows of q/k/v)
        f_old = ff.intermediate_dense.out_features
        a0 = att.num_heads * att.head_dim if i not in self._widen_log else self._widen_log[i][0]["a0"]
        f0 = f_old if i not in self._widen_log else self._widen_log[i][0]["f0"]
        w_new = w_old + k * d
        a_new = a_old + k * a0
        f_copies = k * f0
        f_new = f_old + max(f_copies, self.widen_ffn_per_unit * k * d)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
        exact = init in ("zero_fanout", "net2net")
        p0 = att.q_proj.weight

        def draw(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
            return default_uniform(shape, fan_in, generator, dtype=p0.dtype).to(p0.device)

        def lin(mod: nn.Linear, rows: int, cols: int, row_blocks: int, col_blocks: int, zero_extra_cols: bool = False) -> None:
            """Resize ``mod`` to ``(rows, cols)``: old top-left; copies of the block-0 sub-block
            (``row_blocks x col_blocks``) on the diagonal for exact inits, random elsewhere."""
            w, b = mod.weight, mod.bias
            r0, c0 = w.shape
            nw = draw((rows, cols), cols)
            nb = draw((rows,), cols) if b is not None else None
            if exact:
                nw.zero_()
                if nb is not None:
                    nb.zero_()
            nw[:r0, :c0] = w
            if nb is not None:
                nb[:r0] = b
            if exact:
                for c in range(k):
                    rs, cs = r0 + c * row_blocks, c0 + c * col_blocks
                    nw[rs : rs + row_blocks, cs : cs + col_blocks] = w[:row_blocks, :col_blocks]
                    if nb is not None:
                        nb[rs : rs + row_blocks] = b[:row_blocks]
                if rows > r0 + k * row_blocks:  # FFN units beyond the copies: random fan-in, zero bias
                    extra = rows - r0 - k * row_blocks
                    nw[r0 + k * row_blocks :, :] = draw((extra, cols), cols)
            if zero_extra_cols and cols > c0 + k * col_blocks:
                nw[:, c0 + k * col_blocks :] = 0.0
            set_param(mod, "weight", nw)
            if nb is not None:
                set_param(mod, "bias", nb)
            mod.out_features, mod.in_features = rows, cols

        for name in ("q_proj", "k_proj", "v_proj"):
            lin(getattr(att, name), a_new, w_new, a0, d)
        lin(att.out_proj, w_new, a_new, d, a0)
        lin(ff.intermediate_dense, f_new, w_new, f0, d)
        lin(ff.output_dense, w_new, f_new, d, f0, zero_extra_cols=exact)
        att.num_heads = a_new // att.head_dim
        att.embed_dim = w_new
        for ln in (layer.layer_norm, layer.final_layer_norm):
            nw = torch.ones(w_new, dtype=ln.weight.dtype, device=ln.weight.device)
            nb = torch.zeros(w_new, dtype=ln.bias.dtype, device=ln.bias.device)
            nw[:w_old], nb[:w_old] = ln.weight, ln.bias
            if exact:
                for c in range(k):
                    nw[w_old + c * d : w_old + (c + 1) * d] = ln.weight[:d]
                    nb[w_old + c * d : w_old + (c + 1) * d] = ln.bias[:d]
            set_param(ln, "weight", nw)
            set_param(ln, "bias", nb)
            ln.normalized_shape = (w_new,)

        added: set[str] = set()
        eye = torch.eye(d, dtype=p0.dtype, device=p0.device)
        if isinstance(layer, WidenedEncoderLayer):
            pin, pout = layer.proj_in, layer.proj_out
        else:
            pin = nn.Linear(d, d).to(device=p0.device, dtype=p0.dtype)
            pout = nn.Linear(d, d).to(device=p0.device, dtype=p0.dtype)
            pin.weight.copy_(eye), pin.bias.zero_(), pout.weight.copy_(eye), pout.bias.zero_()
            layer = layers[i] = WidenedEncoderLayer(layer, pin, pout)
            added = {prefix + n for n in ("proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias")}
            before.update({"proj_in.weight": (d, d), "proj_in.bias": (d,), "proj_out.weight": (d, d), "proj_out.bias": (d,)})
        # proj_in rows (W -> W'), proj_out columns
        new_in_w, new_in_b = draw((w_new, d), d), draw((w_new,), d)
        new_out_w, new_out_b = draw((d, w_new), w_new), draw((d,), w_new)
        if exact or w_old > d:
            new_in_w[:w_old], new_in_b[:w_old] = pin.weight, pin.bias
            new_out_w[:, :w_old], new_out_b = pout.weight, pout.bias.detach().clone()
        if exact:
            new_in_b[w_old:] = 0.0
            first_out = new_out_w[:, :d].clone()
            new_out_w[:, w_old:] = 0.0
            for c in range(k):
                new_in_w[w_old + c * d : w_old + (c + 1) * d] = pin.weight[:d]
                new_in_b[w_old + c * d : w_old + (c + 1) * d] = pin.bias[:d]
                if init == "net2net":
                    new_out_w[:, w_old + c * d : w_old + (c + 1) * d] = first_out / (k + 1)
            if init == "net2net":
                new_out_w[:, :d] = first_out / (k + 1)
        layer.proj_in = _empty_linear(d, w_new, p0)  # every entry is set below
        layer.proj_out = _empty_linear(w_new, d, p0)
        layer.proj_in.weight.copy_(new_in_w), layer.proj_in.bias.copy_(new_in_b)
        layer.proj_out.weight.copy_(new_out_w), layer.proj_out.bias.copy_(new_out_b)
        after = _shapes(layer)
        changed = {prefix + n: TensorChange.appended(before[n], after[n]) for n in after if prefix + n not in added}
        self._widen_log.setdefault(i, []).append({
            "blocks": k, "before": before, "after": after, "new_proj": bool(added),
            "ffn": f_new - f_old, "attn": a_new - a_old, "a0": a0, "f0": f0, "heads_before": a_old // att.head_dim,
        })
        return SurgeryResult(f"layer{i}.width", "grow", k * d, changed, added)

    # ---- shrink ----------------------------------------------------------------------
    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """Shrink ``point``; ``layer{i}.width`` undoes the last widenings (see the module docstring).
        :meth:`Backbone.shrink` checked the rule and the amount.

        Raises:
            ScheduleError: an amount that is not the sum of the last widenings, a partial
                ``magnitude`` shrink, or a later ffn/attn growth still in place.
        """
        i, kind = self._index(point)
        if kind != "width":
            return super()._shrink(point, neurons, rule=rule)
        have = self.grown(point)
        n = neurons
        if rule == "magnitude" and n != have:
            raise ScheduleError(f"point {point!r}: a 'magnitude' shrink of a widened layer must remove all {have} grown units; "
                                f"use 'appended' to undo the last widenings")
        log = self._widen_log[i]
        undo, total = 0, 0
        for e in reversed(log):
            total += e["blocks"] * self.embed_dim
            undo += 1
            if total >= n:
                break
        if total != n:
            sizes = [e["blocks"] * self.embed_dim for e in log]
            raise ScheduleError(f"point {point!r}: shrink by {n} does not undo whole widenings (they added {sizes}, last is undone first)")
        layer = self._layer(i)
        if _shapes(layer) != log[-1]["after"]:
            raise ScheduleError(f"point {point!r}: layer {i}'s ffn/attn grew after its widening; shrink those first")
        target = log[-undo]
        prefix = f"{_LAYERS}.{i}."
        with torch.no_grad():
            keep = target["before"]
            params = dict(layer.named_parameters())
            changed: dict[str, TensorChange] = {}
            removed: set[str] = set()
            for name, p in params.items():
                if name.startswith(("proj_in.", "proj_out.")) and target["new_proj"]:
                    removed.add(prefix + name)
                    continue
                shape = keep[name]
                changed[prefix + name] = TensorChange.kept(tuple(p.shape), {d: torch.arange(s) for d, s in enumerate(shape)})
            for mod_name in _LINEARS:
                _truncate(layer.get_submodule(mod_name), *keep[f"{mod_name}.weight"])
            w = keep["layer_norm.weight"][0]
            for ln_name in _NORMS:
                ln: nn.LayerNorm = getattr(layer, ln_name)
                set_param(ln, "weight", ln.weight[:w].clone())
                set_param(ln, "bias", ln.bias[:w].clone())
                ln.normalized_shape = (w,)
            layer.attention.embed_dim = w
            layer.attention.num_heads = target["heads_before"]
            if target["new_proj"]:
                self.wav2vec2.encoder.transformer.layers[i] = plain_encoder_layer(layer)
            else:
                for pname in ("proj_in", "proj_out"):
                    _truncate(getattr(layer, pname), *keep[f"{pname}.weight"])
        del log[-undo:]
        if not log:
            del self._widen_log[i]
        return SurgeryResult(point, "shrink", n, changed, set(), removed)


@register_backbone("wav2vec2_widen", presets={k: dict(v) for k, v in PRESETS.items()}, default_preset="small",
                   description="wav2vec2 whose encoder layers widen in place with projectors (the paper's wav2vec2-small dropin)")
def wav2vec2_widen(**kwargs: Any) -> Wav2Vec2Widen:
    """Build a :class:`Wav2Vec2Widen` (presets ``base``, ``small``, ``tiny`` as ``wav2vec2``)."""
    return Wav2Vec2Widen(**kwargs)
