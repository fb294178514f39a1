"""The ``wav2vec2`` backbone: torchaudio's Wav2Vec2 encoder, mean-pooled, and a 2-way head.

Shapes: waveform ``(batch, samples)`` at 16 kHz -> (front-end :class:`~growsearch.data.features.Raw`)
-> ``torchaudio.models.Wav2Vec2Model`` (conv feature extractor + transformer, ``aux=None``)
-> ``(batch, frames, embed_dim)`` -> mean over frames -> ``Linear(embed_dim, 2)`` -> logits
``(batch, 2)``. Frames are ``samples / 320`` (rounded down, minus the conv edges) for the
standard conv extractor; no padding mask is used (inputs have a fixed length).

Presets:

- ``base``: the torchaudio ``wav2vec2_base`` architecture (768-d, 12 layers, 12 heads, FFN
  3072, 7-layer 512-channel conv extractor), ~94.4 M parameters; ``pretrained: PATH`` loads
  weights (see :mod:`growsearch.backbones.pretrained`).
- ``small``: the paper's from-scratch model: 256-d, 12 layers, 4 heads, FFN 512 (standard
  conv extractor).
- ``tiny``: 32-channel conv extractor (same strides, 320 samples per frame), 32-d, 2 layers,
  2 heads, FFN 64: for tests.

Growth points, for every encoder layer ``i`` (0-based):

- ``layer{i}.ffn``: FFN width (rows of ``intermediate_dense``, columns of ``output_dense``);
  one unit = one FFN neuron.
- ``layer{i}.attn``: attention heads (rows of ``q/k/v_proj`` per head, columns of
  ``out_proj``); widths are counted in dimensions and grow in steps of ``head_dim``
  (one head). ``num_heads`` is updated; ``head_dim`` and the attention scaling do not change,
  so zero-fan-out and Net2Net growth are exact.
- ``layer{i}``: ``parallel`` form: a whole parallel encoder layer at layer ``i``; the outputs of
  the layer and its branches are concatenated and projected back to the model width by a new
  ``Linear((1 + branches) * D, D)`` (the paper's wav2vec2-base dropin, 768+768 -> 768).
  ``neurons`` must be a multiple of the model width ``D`` (one branch per ``D``).

Options that reproduce the authors' Hugging Face ``Wav2Vec2Model`` setup (presets
``base_authors``, ``small_authors``):

- ``head: mlp``: ``[Dropout(head_input_dropout)] -> Linear(D, head_hidden) -> ReLU ->
  Dropout(head_dropout) -> Linear(head_hidden, 2)`` (the authors' classifier, 256 hidden units;
  a leading dropout for -small). Default ``head: linear`` is ``Linear(D, 2)``.
- ``mask_time_prob`` / ``mask_time_length``: learned time masking as Hugging Face applies it
  while training: after the feature projection, ``max(mask_time_min_masks, int(prob * T /
  length + U[0, 1)))`` spans of ``length`` frames start at distinct random frames of each
  sequence, and the frames they cover are replaced by the learned ``masked_spec_embed``
  ``(D,)`` (initialised ``U[0, 1)``; loaded from a pretrained file that has it). Not applied
  in eval mode. ``mask_time_prob: 0`` (default) builds no ``masked_spec_embed``.
- ``layer_drop``: each encoder layer is skipped with this probability per training batch
  (torchaudio's ``encoder_layer_drop``, the same rule as Hugging Face's ``layerdrop``).

Initialisers: ``random`` (PyTorch default ``Linear`` init for new rows and columns; for a
parallel branch a fresh layer and a freshly initialised projection, as the paper), ``zero_fanout``
(new rows random, new outgoing columns zero; for a parallel branch the projection starts as
``[I | 0]``), ``net2net`` (duplicate randomly chosen existing units / heads / the layer itself and
split their outgoing columns evenly between the copies). Shrink rules: ``appended`` (drop the
last units by index, as the paper) and ``magnitude`` (drop the units with the smallest
``|fan-in| * |fan-out|`` norm product; for branches the projection block norm).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torchaudio
from torch import nn
from torchaudio.models.wav2vec2.components import EncoderLayer, FeedForward, SelfAttention

from growsearch.backbones.base import Backbone, GrowthPoint
from growsearch.backbones.registry import register_backbone
from growsearch.data.features import create_frontend
from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.init import redraw_default_
from growsearch.growth.surgery import SurgeryResult, TensorChange
from growsearch.growth.widen import keep_appended, keep_largest, narrow_units, unit_scores, widen_units

#: The standard wav2vec 2.0 conv feature extractor: (channels, kernel, stride); 320 samples/frame.
STANDARD_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
TINY_CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2

PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(
        embed_dim=768, num_layers=12, num_heads=12, ffn_dim=3072, conv_layers=STANDARD_CONV,
        extractor_mode="group_norm", conv_bias=False, pos_conv_kernel=128, pos_conv_groups=16,
        dropout=0.1, attention_dropout=0.1, ffn_dropout=0.1, projection_dropout=0.1,
    ),
    "small": dict(
        embed_dim=256, num_layers=12, num_heads=4, ffn_dim=512, conv_layers=STANDARD_CONV,
        extractor_mode="group_norm", conv_bias=False, pos_conv_kernel=128, pos_conv_groups=16,
        dropout=0.1, attention_dropout=0.1, ffn_dropout=0.1, projection_dropout=0.1,
    ),
    "tiny": dict(
        embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_layers=TINY_CONV,
        extractor_mode="group_norm", conv_bias=False, pos_conv_kernel=16, pos_conv_groups=2,
        dropout=0.0, attention_dropout=0.0, ffn_dropout=0.0, projection_dropout=0.0,
    ),
}
#: the authors' Hugging Face setup: MLP head, learned time masking (+ layerdrop 0.1 for -small)
_AUTHORS = dict(head="mlp", head_hidden=256, head_dropout=0.1, mask_time_prob=0.05, mask_time_length=10)
PRESETS.update({
    "base_authors": {**PRESETS["base"], **_AUTHORS},
    "small_authors": {**PRESETS["small"], **_AUTHORS, "head_input_dropout": 0.1, "layer_drop": 0.1},
    # tiny: no layerdrop (2 layers; the contract tests need every layer to train in each step)
    "tiny_authors": {**PRESETS["tiny"], **_AUTHORS, "head_hidden": 16, "mask_time_length": 2},
})

_LAYERS = "wav2vec2.encoder.transformer.layers"
#: Per point kind, the producer Linears of its units and their consumer (relative to the encoder layer).
_UNITS: dict[str, tuple[tuple[str, ...], str]] = {
    "ffn": (("feed_forward.intermediate_dense",), "feed_forward.output_dense"),
    "attn": (("attention.q_proj", "attention.k_proj", "attention.v_proj"), "attention.out_proj"),
}


def init_encoder_layer(layer: EncoderLayer, parts: EncoderLayer) -> None:
    """Run torchaudio's ``EncoderLayer.__init__`` on ``layer`` with ``parts``' attention, dropout
    rate, norm order and feed-forward, then give it ``parts``' two LayerNorms.

    The submodules are shared, not copied (their parameters, trained values and optimizer state
    stay), and registered in torchaudio's order, so the state-dict names are the plain layer's.
    """
    EncoderLayer.__init__(layer, parts.attention, parts.dropout.p, parts.layer_norm_first, parts.feed_forward)
    layer.layer_norm = parts.layer_norm
    layer.final_layer_norm = parts.final_layer_norm
    layer.train(parts.training)


def plain_encoder_layer(parts: EncoderLayer) -> EncoderLayer:
    """A plain torchaudio :class:`EncoderLayer` built from ``parts``' submodules (shared)."""
    layer = EncoderLayer.__new__(EncoderLayer)
    init_encoder_layer(layer, parts)
    return layer


class ParallelEncoderLayer(EncoderLayer):
    """An encoder layer with parallel branches whose outputs are concatenated and projected.

    Built from the original layer's parts (:func:`init_encoder_layer`, so the original
    parameter names ``...layers.{i}.attention.*`` stay valid) plus ``branches`` (a
    ``ModuleList`` of :class:`EncoderLayer`) and ``proj`` (``Linear((1 + len(branches)) * D, D)``).

    Shapes: ``(batch, frames, D)`` -> ``(batch, frames, D)``.
    """

    def __init__(self, main: EncoderLayer, branches: list[EncoderLayer], proj: nn.Linear) -> None:
        init_encoder_layer(self, main)
        self.branches = nn.ModuleList(branches)
        self.proj = proj

    def main_layer(self) -> EncoderLayer:
        """A plain :class:`EncoderLayer` sharing this layer's original submodules."""
        return plain_encoder_layer(self)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` and the rest of ``EncoderLayer.forward``'s arguments, passed to every branch."""
        y, position_bias = super().forward(x, *args, **kwargs)
        outs = [y] + [b(x, *args, **kwargs)[0] for b in self.branches]
        return self.proj(torch.cat(outs, dim=-1)), position_bias


class Wav2Vec2Backbone(Backbone):
    """torchaudio Wav2Vec2 encoder -> mean over frames -> ``Linear(embed_dim, 2)``.

    Args:
        embed_dim: transformer width ``D``.
        num_layers: encoder layers.
        num_heads: attention heads (must divide ``embed_dim``).
        ffn_dim: FFN intermediate width.
        conv_layers: conv feature extractor ``[(channels, kernel, stride), ...]``.
        extractor_mode: ``group_norm`` (base) or ``layer_norm`` (large).
        conv_bias: bias in the conv extractor.
        pos_conv_kernel: convolutional positional embedding kernel.
        pos_conv_groups: its groups (must divide ``embed_dim``).
        dropout: encoder dropout. attention_dropout, ffn_dropout, projection_dropout: the others.
        layer_drop: probability of skipping an encoder layer while training (0 by default).
        layer_norm_first: pre-LN transformer (large) instead of post-LN (base).
        head: ``linear`` (``Linear(D, 2)``) or ``mlp`` (see the module docstring).
        head_hidden, head_dropout, head_input_dropout: the ``mlp`` head's width and dropouts.
        mask_time_prob, mask_time_length, mask_time_min_masks: learned time masking (module
            docstring); ``mask_time_prob > 0`` adds the ``masked_spec_embed`` parameter.
        pretrained: path of a weights file (torchaudio / Hugging Face / fairseq state dict)
            loaded into the Wav2Vec2 part; see :func:`growsearch.backbones.pretrained.load_pretrained`.

    Raises:
        ConfigError: an inconsistent option (e.g. heads not dividing the width) or a
            pretrained file that does not fit.
    """

    input_kind = "raw"
    pretrained_option = True  # ``pretrained=PATH``: torchaudio / Hugging Face / fairseq files (see pretrained.py)

    def __init__(
        self,
        *,
        embed_dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        conv_layers: Any = STANDARD_CONV,
        extractor_mode: str = "group_norm",
        conv_bias: bool = False,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        ffn_dropout: float = 0.1,
        projection_dropout: float = 0.1,
        layer_drop: float = 0.0,
        layer_norm_first: bool = False,
        head: str = "linear",
        head_hidden: int = 256,
        head_dropout: float = 0.1,
        head_input_dropout: float = 0.0,
        mask_time_prob: float = 0.0,
        mask_time_length: int = 10,
        mask_time_min_masks: int = 2,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if head not in ("linear", "mlp"):
            raise ConfigError(f"wav2vec2: head {head!r} is not one of linear, mlp")
        if not 0.0 <= float(mask_time_prob) < 1.0 or int(mask_time_length) < 1 or int(mask_time_min_masks) < 0:
            raise ConfigError(f"wav2vec2: mask_time_prob must be in [0, 1) and mask_time_length >= 1 "
                              f"(got {mask_time_prob!r}, {mask_time_length!r})")
        for key, val in (("embed_dim", embed_dim), ("num_layers", num_layers), ("num_heads", num_heads), ("ffn_dim", ffn_dim)):
            if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
                raise ConfigError(f"wav2vec2: {key} must be a positive integer, got {val!r}")
        if embed_dim % num_heads:
            raise ConfigError(f"wav2vec2: num_heads {num_heads} does not divide embed_dim {embed_dim}")
        if embed_dim % pos_conv_groups:
            raise ConfigError(f"wav2vec2: pos_conv_groups {pos_conv_groups} does not divide embed_dim {embed_dim}")
        if extractor_mode not in ("group_norm", "layer_norm"):
            raise ConfigError(f"wav2vec2: extractor_mode {extractor_mode!r} is not one of group_norm, layer_norm")
        try:
            convs = [tuple(int(v) for v in c) for c in conv_layers]
            if not convs or any(len(c) != 3 for c in convs):
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"wav2vec2: conv_layers must be a list of [channels, kernel, stride], got {conv_layers!r}") from None
        self.frontend = create_frontend("raw")
        self.wav2vec2 = torchaudio.models.wav2vec2_model(
            extractor_mode=extractor_mode,
            extractor_conv_layer_config=convs,
            extractor_conv_bias=conv_bias,
            encoder_embed_dim=embed_dim,
            encoder_projection_dropout=projection_dropout,
            encoder_pos_conv_kernel=pos_conv_kernel,
            encoder_pos_conv_groups=pos_conv_groups,
            encoder_num_layers=num_layers,
            encoder_num_heads=num_heads,
            encoder_attention_dropout=attention_dropout,
            encoder_ff_interm_features=ffn_dim,
            encoder_ff_interm_dropout=ffn_dropout,
            encoder_dropout=dropout,
            encoder_layer_norm_first=layer_norm_first,
            encoder_layer_drop=layer_drop,
            aux_num_out=None,
        )
        if head == "linear":
            self.head: nn.Module = nn.Linear(embed_dim, 2)
        else:
            self.head = nn.Sequential(
                *([nn.Dropout(head_input_dropout)] if head_input_dropout > 0 else []),
                nn.Linear(embed_dim, int(head_hidden)), nn.ReLU(), nn.Dropout(head_dropout), nn.Linear(int(head_hidden), 2),
            )
        self.mask_time_prob, self.mask_time_length = float(mask_time_prob), int(mask_time_length)
        self.mask_time_min_masks = int(mask_time_min_masks)
        self.masked_spec_embed: nn.Parameter | None = None
        if self.mask_time_prob > 0:
            self.masked_spec_embed = nn.Parameter(torch.empty(embed_dim).uniform_())
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.head_dim = embed_dim // num_heads
        self._base_heads = num_heads
        self._base_ffn = ffn_dim
        self._layer_cfg = dict(
            embed_dim=embed_dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout,
            attention_dropout=attention_dropout, ffn_dropout=ffn_dropout, layer_norm_first=layer_norm_first,
        )
        if pretrained is not None:
            from growsearch.backbones.pretrained import load_pretrained

            load_pretrained(self, pretrained)

    # ---- forward ---------------------------------------------------------------------
    def body(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features: waveform ``(batch, samples)``. Returns: logits ``(batch, 2)``."""
        w = self.wav2vec2
        x, _ = w.feature_extractor(features, None)  # (B, T, C)
        x = w.encoder.feature_projection(x)  # (B, T, D)
        if self.masked_spec_embed is not None and self.training:
            x = self._mask_time(x)
        x = w.encoder.transformer(x, attention_mask=None)  # (B, T, D)
        return self.head(x.mean(dim=1))

    def _mask_time(self, x: torch.Tensor) -> torch.Tensor:
        """Replace random spans of frames by ``masked_spec_embed`` (see the module docstring)."""
        assert self.masked_spec_embed is not None
        b, t, _ = x.shape
        span = self.mask_time_length
        if t < span:
            return x
        mask = torch.zeros(b, t, dtype=torch.bool)
        for i in range(b):
            n = int(self.mask_time_prob * t / span + torch.rand(()).item())
            n = min(max(n, self.mask_time_min_masks), t - span + 1)
            starts = torch.randperm(t - span + 1)[:n]
            mask[i, (starts.view(-1, 1) + torch.arange(span)).flatten()] = True
        mask = mask.to(x.device).unsqueeze(-1)
        return torch.where(mask, self.masked_spec_embed.to(x.dtype), x)

    # ---- growth points ---------------------------------------------------------------
    def growth_points(self) -> dict[str, GrowthPoint]:
        pts: dict[str, GrowthPoint] = {}
        for i in range(self.num_layers):
            pts[f"layer{i}.ffn"] = GrowthPoint(
                f"layer{i}.ffn", self._base_ffn, unit="FFN unit",
                description=f"FFN width of encoder layer {i}",
            )
            pts[f"layer{i}.attn"] = GrowthPoint(
                f"layer{i}.attn", self.embed_dim, unit="head dim", step=self.head_dim,
                description=f"attention heads of encoder layer {i} (one head = {self.head_dim} dims)",
            )
            pts[f"layer{i}"] = GrowthPoint(
                f"layer{i}", self.embed_dim, forms=("parallel",), unit="parallel layer width", step=self.embed_dim,
                description=f"parallel encoder layers at layer {i}, concatenated and projected back to {self.embed_dim}",
            )
        return pts

    def _layer(self, i: int) -> EncoderLayer:
        return self.wav2vec2.encoder.transformer.layers[i]

    def _parse(self, point: str) -> tuple[int, str]:
        pts = self.growth_points()
        if point not in pts:
            raise ScheduleError(f"unknown growth point {point!r}; valid points: {', '.join(sorted(pts))}")
        head, _, kind = point.partition(".")
        return int(head[len("layer"):]), kind or "layer"

    def width(self, point: str) -> int:
        i, kind = self._parse(point)
        layer = self._layer(i)
        if kind == "ffn":
            return layer.feed_forward.intermediate_dense.out_features
        if kind == "attn":
            return layer.attention.num_heads * layer.attention.head_dim
        n = len(layer.branches) if isinstance(layer, ParallelEncoderLayer) else 0
        return self.embed_dim * (1 + n)

    # ---- grow ------------------------------------------------------------------------
    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        """Add ``neurons`` units at ``point`` (see the module docstring for the forms); checked
        by :meth:`Backbone.grow`."""
        i, kind = self._parse(point)
        with torch.no_grad():
            if kind == "layer":
                return self._grow_parallel(i, neurons // self.embed_dim, init, generator)
            layer, unit = self._layer(i), self._unit(i, kind)
            producers, consumer = _UNITS[kind]
            changed = widen_units(layer, producers, consumer, neurons // unit, unit=unit, init=init, generator=generator)
            if kind == "attn":
                layer.attention.num_heads += neurons // unit
        return SurgeryResult(point, "grow", neurons, {f"{_LAYERS}.{i}.{k}": v for k, v in changed.items()})

    def _unit(self, i: int, kind: str) -> int:
        """Rows per growth unit of ``layer{i}.ffn`` (one neuron) or ``layer{i}.attn`` (one head)."""
        return self._layer(i).attention.head_dim if kind == "attn" else 1

    def _new_layer(self, like: EncoderLayer, generator: torch.Generator | None) -> EncoderLayer:
        """A fresh encoder layer (PyTorch default init drawn from ``generator``) on ``like``'s device.

        Built on the meta device and initialised once, so growing ``base`` does not pay for
        initialising ~7 M weights twice.
        """
        c = self._layer_cfg
        with torch.device("meta"):
            att = SelfAttention(c["embed_dim"], c["num_heads"], c["attention_dropout"])
            ff = FeedForward(c["embed_dim"], c["ffn_dim"], c["ffn_dropout"], c["dropout"])
            layer = EncoderLayer(att, c["dropout"], c["layer_norm_first"], ff)
        p = next(like.parameters())
        layer = layer.to_empty(device=p.device).to(dtype=p.dtype)
        redraw_default_(layer, generator)
        with torch.no_grad():
            for mod in layer.modules():
                if isinstance(mod, nn.LayerNorm):
                    nn.init.ones_(mod.weight)
                    nn.init.zeros_(mod.bias)
        return layer.train(like.training)

    def _grow_parallel(self, i: int, k: int, init: str, generator: torch.Generator | None) -> SurgeryResult:
        layers = self.wav2vec2.encoder.transformer.layers
        layer = layers[i]
        d = self.embed_dim
        prefix = f"{_LAYERS}.{i}."
        old_branches = len(layer.branches) if isinstance(layer, ParallelEncoderLayer) else 0
        main = layer.main_layer() if isinstance(layer, ParallelEncoderLayer) else layer
        p0 = next(layer.parameters())
        new_branches: list[EncoderLayer] = []
        for _ in range(k):
            if init == "net2net":
                b = copy.deepcopy(main)
            else:
                b = self._new_layer(main, generator)
            new_branches.append(b)
        nb = old_branches + k
        with torch.device("meta"):
            proj = nn.Linear((1 + nb) * d, d)
        proj = proj.to_empty(device=p0.device).to(dtype=p0.dtype)  # every entry is set below
        old_proj = layer.proj if isinstance(layer, ParallelEncoderLayer) else None
        changed: dict[str, TensorChange] = {}
        added: set[str] = set()
        with torch.no_grad():
            eye = torch.eye(d, device=p0.device, dtype=p0.dtype)
            if init == "random":
                redraw_default_(proj, generator)
            elif init == "zero_fanout":
                proj.weight.zero_()
                proj.bias.zero_()
                if old_proj is None:
                    proj.weight[:, :d] = eye
                else:
                    proj.weight[:, : old_proj.in_features] = old_proj.weight
                    proj.bias.copy_(old_proj.bias)
            else:  # net2net: the main layer's block is split evenly between it and its copies
                w_main = eye if old_proj is None else old_proj.weight[:, :d]
                proj.weight.zero_()
                proj.weight[:, :d] = w_main / (k + 1)
                if old_proj is not None:
                    proj.weight[:, d : old_proj.in_features] = old_proj.weight[:, d:]
                    proj.bias.copy_(old_proj.bias)
                else:
                    proj.bias.zero_()
                for j in range(k):
                    s = (1 + old_branches + j) * d
                    proj.weight[:, s : s + d] = w_main / (k + 1)
        if old_proj is None:
            new_layer = ParallelEncoderLayer(layer, new_branches, proj)
            added.update({prefix + "proj.weight", prefix + "proj.bias"})
        else:
            new_layer = layer
            new_layer.branches.extend(new_branches)
            new_layer.proj = proj
            if init == "random":  # every entry of the projection is new
                changed[prefix + "proj.weight"] = _nothing_survives(tuple(old_proj.weight.shape), tuple(proj.weight.shape))
                changed[prefix + "proj.bias"] = _nothing_survives(tuple(old_proj.bias.shape), tuple(proj.bias.shape))
            else:
                changed[prefix + "proj.weight"] = TensorChange.appended(tuple(old_proj.weight.shape), tuple(proj.weight.shape))
                changed[prefix + "proj.bias"] = TensorChange.appended(tuple(old_proj.bias.shape), tuple(proj.bias.shape))
        new_layer.train(layer.training)
        layers[i] = new_layer
        for j in range(old_branches, nb):
            added.update(prefix + f"branches.{j}." + n for n, _ in new_layer.branches[j].named_parameters())
        return SurgeryResult(f"layer{i}", "grow", k * d, changed, added)

    # ---- shrink ----------------------------------------------------------------------
    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """Remove ``neurons`` units at ``point``; checked by :meth:`Backbone.shrink`."""
        i, kind = self._parse(point)
        n = neurons
        with torch.no_grad():
            if kind == "layer":
                return self._shrink_parallel(i, n // self.embed_dim, rule)
            layer, unit = self._layer(i), self._unit(i, kind)
            producers, consumer = _UNITS[kind]
            units = layer.get_submodule(consumer).weight.shape[1] // unit
            if rule == "appended":
                keep = keep_appended(units, n // unit)
            else:
                keep = keep_largest(unit_scores(layer, producers, consumer, unit=unit), n // unit)
            changed = narrow_units(layer, producers, consumer, keep, unit=unit)
            if kind == "attn":
                layer.attention.num_heads -= n // unit
        return SurgeryResult(point, "shrink", n, {f"{_LAYERS}.{i}.{k}": v for k, v in changed.items()})

    def _shrink_parallel(self, i: int, k: int, rule: str) -> SurgeryResult:
        layers = self.wav2vec2.encoder.transformer.layers
        layer: ParallelEncoderLayer = layers[i]
        d = self.embed_dim
        prefix = f"{_LAYERS}.{i}."
        nb = len(layer.branches)
        if rule == "appended":
            drop = list(range(nb - k, nb))
        else:
            norms = torch.stack([layer.proj.weight[:, (1 + j) * d : (2 + j) * d].norm() for j in range(nb)])
            drop = sorted(torch.argsort(norms, stable=True)[:k].tolist())
        keep = [j for j in range(nb) if j not in drop]

        def names(j_new: int, j_old: int) -> set[str]:
            return {prefix + f"branches.{j_new}." + n for n, _ in layer.branches[j_old].named_parameters()}

        old_names = set().union(*(names(j, j) for j in range(nb)))
        new_names = set().union(set(), *(names(jn, jo) for jn, jo in enumerate(keep)))
        same = set().union(set(), *(names(jn, jo) for jn, jo in enumerate(keep) if jn == jo))
        removed = old_names - new_names
        added = new_names - same  # a branch that moved to a new index is new to the optimizer
        changed: dict[str, TensorChange] = {}
        if not keep:
            layers[i] = layer.main_layer()
            removed |= {prefix + "proj.weight", prefix + "proj.bias"}
        else:
            cols = torch.cat([torch.arange(d)] + [torch.arange((1 + j) * d, (2 + j) * d) for j in keep])
            old_w = layer.proj.weight
            ch = TensorChange.kept(tuple(old_w.shape), {1: cols})
            new_proj = nn.Linear(len(cols), d).to(device=old_w.device, dtype=old_w.dtype)
            with torch.no_grad():
                new_proj.weight.copy_(old_w[:, cols])
                new_proj.bias.copy_(layer.proj.bias)
            new_proj.weight.requires_grad_(old_w.requires_grad)
            new_proj.bias.requires_grad_(layer.proj.bias.requires_grad)
            layer.proj = new_proj
            layer.branches = nn.ModuleList([layer.branches[j] for j in keep])
            changed[prefix + "proj.weight"] = ch
            changed[prefix + "proj.bias"] = TensorChange.kept((d,), {})
        return SurgeryResult(f"layer{i}", "shrink", k * d, changed, added, removed)


# ---- helpers ---------------------------------------------------------------------------

def _nothing_survives(old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> TensorChange:
    empty = tuple(torch.zeros(0, dtype=torch.long) for _ in old_shape)
    return TensorChange(old_shape, new_shape, empty, empty)


@register_backbone("wav2vec2", presets=PRESETS, default_preset="small",
                   description="torchaudio Wav2Vec2 on raw waveforms, mean-pooled, 2-way head")
def wav2vec2(**kwargs: Any) -> Wav2Vec2Backbone:
    """Build a :class:`Wav2Vec2Backbone` (see its arguments; presets ``base``, ``small``, ``tiny``)."""
    return Wav2Vec2Backbone(**kwargs)
