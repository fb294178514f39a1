"""LoRA on wav2vec2's attention projections, as a growth point: the paper's comparison baseline.

The paper compares dropin with LoRA (rank 8, alpha 16, on the ``q`` and ``v`` projections
of every encoder layer) on a pretrained wav2vec2. Here LoRA is *growth*: the ``wav2vec2_lora``
backbone is the ``wav2vec2`` backbone (same presets, options, parameter names and growth
points) plus one more growth point, ``lora``, whose width is the adapter rank. Growing it
by ``r`` adds rank-``r`` adapters to ``q_proj`` and ``v_proj`` of every encoder layer::

    y = W x + b + scale * B (A x),    A: (rank, in),  B: (out, rank),  scale = alpha / rank

so a LoRA run is an ordinary schedule, and a study can enqueue it as a reference trial::

    events: [{point: lora, epoch: 0, neurons: 8, init: zero_fanout, freeze: new_only}]
    # with training.freeze_extra_trainable: [head]  -> only A, B and the head train

Trainable parameters then number ``sum over adapted Linears r * (in + out)`` plus the head
(``2 * D + 2``); for wav2vec2-base (12 layers, D = 768, r = 8) that is
``24 * 8 * 1536 + 1538 = 296,450``.

``scale`` is fixed when the backbone is built (``lora_alpha / lora_rank``, default 16 / 8),
not recomputed from the grown rank, so growing the rank further with ``zero_fanout`` is still
function-preserving.

Initialisers: ``zero_fanout`` (standard LoRA: ``A`` ~ U(-1/sqrt(in), 1/sqrt(in)), ``B = 0``,
exact function preservation) and ``random`` (``B`` ~ U(-1/sqrt(rank), 1/sqrt(rank)) too).
Shrink rules: ``appended`` (drop the last rank components) and ``magnitude`` (drop the
components with the smallest ``|A row| * |B column|`` summed over the adapted Linears).
Shrinking to rank 0 removes the adapters (the model is the plain ``wav2vec2`` again).

Only the main encoder layers are adapted, not the parallel branches of the ``layer{i}`` point.
Growing a ``layer{i}.attn`` point after LoRA pads the adapters' ``B`` rows with zeros (new
heads get no adapter contribution), shrinking it drops the matching rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from growsearch.backbones.base import GrowthPoint
from growsearch.backbones.registry import register_backbone
from growsearch.backbones.wav2vec2 import _LAYERS, PRESETS, Wav2Vec2Backbone
from growsearch.errors import ConfigError
from growsearch.growth.surgery import SurgeryResult, TensorChange
from growsearch.vocabulary import INITS

__all__ = ["LORA_INITS", "LORA_TARGETS", "LoRALinear", "Wav2Vec2LoRA", "lora_trainable_formula"]

#: The attention projections that get adapters (the paper: q and v).
LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")
#: LoRA's inits: every init but ``net2net`` (a rank component has no unit to copy).
LORA_INITS: tuple[str, ...] = tuple(i for i in INITS if i != "net2net")
POINT = "lora"


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a low-rank adapter: ``y = x W^T + b + scale * (x A^T) B^T``.

    Made in place from an existing ``nn.Linear`` by :func:`add_rank` (its ``weight`` and
    ``bias`` keep their names), so state-dict keys are the Linear's plus ``lora_A``
    ``(rank, in_features)`` and ``lora_B`` ``(out_features, rank)``.

    Shapes: ``(..., in_features)`` -> ``(..., out_features)``.
    """

    lora_A: nn.Parameter
    lora_B: nn.Parameter
    lora_scale: float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        return y + self.lora_scale * F.linear(F.linear(x, self.lora_A), self.lora_B)

    @property
    def rank(self) -> int:
        return int(self.lora_A.shape[0])


def _uniform(shape: tuple[int, ...], bound: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    t = torch.rand(shape, generator=generator, dtype=torch.float32) * (2 * bound) - bound
    return t.to(device=like.device, dtype=like.dtype)


def rank_of(lin: nn.Linear) -> int:
    """The adapter rank of ``lin`` (0 for a plain Linear)."""
    return lin.rank if isinstance(lin, LoRALinear) else 0


def add_rank(
    lin: nn.Linear, k: int, *, scale: float, init: str, generator: torch.Generator | None
) -> dict[str, TensorChange] | set[str]:
    """Add ``k`` rank components to ``lin`` (turning a plain Linear into a :class:`LoRALinear`).

    Returns:
        ``{"lora_A": change, "lora_B": change}`` for a Linear that had adapters, or the set
        ``{"lora_A", "lora_B"}`` of wholly new parameter names.
    """
    w = lin.weight
    a_new = _uniform((k, lin.in_features), 1.0 / math.sqrt(lin.in_features), w, generator)
    if init == "random":
        b_new = _uniform((lin.out_features, k), 1.0 / math.sqrt(rank_of(lin) + k), w, generator)
    elif init != "zero_fanout":
        raise ValueError(f"unknown LoRA init {init!r}; valid inits: {', '.join(LORA_INITS)}")
    else:
        b_new = torch.zeros(lin.out_features, k, dtype=w.dtype, device=w.device)
    if not isinstance(lin, LoRALinear):
        lin.__class__ = LoRALinear
        lin.lora_scale = float(scale)
        lin.lora_A = nn.Parameter(a_new)
        lin.lora_B = nn.Parameter(b_new)
        return {"lora_A", "lora_B"}
    old_a, old_b = lin.lora_A, lin.lora_B
    changes = {
        "lora_A": TensorChange.appended(tuple(old_a.shape), (old_a.shape[0] + k, old_a.shape[1])),
        "lora_B": TensorChange.appended(tuple(old_b.shape), (old_b.shape[0], old_b.shape[1] + k)),
    }
    lin.lora_A = nn.Parameter(torch.cat([old_a.detach(), a_new], 0), requires_grad=old_a.requires_grad)
    lin.lora_B = nn.Parameter(torch.cat([old_b.detach(), b_new], 1), requires_grad=old_b.requires_grad)
    return changes


def keep_rank(lin: LoRALinear, keep: torch.Tensor) -> dict[str, TensorChange] | set[str]:
    """Keep only rank components ``keep`` (sorted indices); none kept -> a plain Linear again.

    Returns:
        The index maps of ``lora_A``/``lora_B``, or the set of removed parameter names.
    """
    if len(keep) == 0:
        del lin.lora_A
        del lin.lora_B
        del lin.lora_scale
        lin.__class__ = nn.Linear
        return {"lora_A", "lora_B"}
    old_a, old_b = lin.lora_A, lin.lora_B
    changes = {"lora_A": TensorChange.kept(tuple(old_a.shape), {0: keep}),
               "lora_B": TensorChange.kept(tuple(old_b.shape), {1: keep})}
    lin.lora_A = nn.Parameter(old_a.detach()[keep.to(old_a.device)].clone(), requires_grad=old_a.requires_grad)
    lin.lora_B = nn.Parameter(old_b.detach()[:, keep.to(old_b.device)].clone(), requires_grad=old_b.requires_grad)
    return changes


def lora_trainable_formula(in_out: list[tuple[int, int]], rank: int) -> int:
    """Adapter parameters: ``sum over adapted Linears of rank * (in + out)``."""
    return sum(rank * (i + o) for i, o in in_out)


class Wav2Vec2LoRA(Wav2Vec2Backbone):
    """The ``wav2vec2`` backbone plus the ``lora`` growth point (see the module docstring).

    Args:
        lora_alpha: LoRA alpha (the paper: 16).
        lora_rank: the nominal rank that sets ``scale = lora_alpha / lora_rank`` (the paper: 8);
            the adapters themselves appear when the ``lora`` point grows.
        **kwargs: the :class:`~growsearch.backbones.wav2vec2.Wav2Vec2Backbone` options.

    Raises:
        ConfigError: a non-positive alpha or rank, or a bad wav2vec2 option.
    """

    def __init__(self, *, lora_alpha: float = 16.0, lora_rank: int = 8, **kwargs: Any) -> None:
        if not isinstance(lora_rank, int) or isinstance(lora_rank, bool) or lora_rank <= 0:
            raise ConfigError(f"wav2vec2_lora: lora_rank must be a positive integer, got {lora_rank!r}")
        if not isinstance(lora_alpha, int | float) or isinstance(lora_alpha, bool) or lora_alpha <= 0:
            raise ConfigError(f"wav2vec2_lora: lora_alpha must be a positive number, got {lora_alpha!r}")
        super().__init__(**kwargs)
        self.lora_scale = float(lora_alpha) / lora_rank

    # ---- helpers ---------------------------------------------------------------------
    def lora_linears(self) -> list[tuple[str, nn.Linear]]:
        """``(name, Linear)`` of every adapted projection, names relative to the backbone."""
        out = []
        for i in range(self.num_layers):
            att = self._layer(i).attention
            out += [(f"{_LAYERS}.{i}.attention.{t}", getattr(att, t)) for t in LORA_TARGETS]
        return out

    # ---- growth points ---------------------------------------------------------------
    def growth_points(self) -> dict[str, GrowthPoint]:
        pts = super().growth_points()
        pts[POINT] = GrowthPoint(
            POINT, 0, forms=("inplace",), inits=LORA_INITS, unit="rank",
            description=f"LoRA rank on {'/'.join(LORA_TARGETS)} of every encoder layer (scale {self.lora_scale:g})",
        )
        return pts

    def width(self, point: str) -> int:
        if point == POINT:
            return rank_of(self.lora_linears()[0][1])
        return super().width(point)

    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        """Grow ``point``; for ``lora`` add ``neurons`` rank components to every adapter
        (checked by :meth:`Backbone.grow`)."""
        if point != POINT:
            return self._sync_attn(super()._grow(point, neurons, form=form, init=init, generator=generator))
        res = SurgeryResult(POINT, "grow", neurons)
        with torch.no_grad():
            for name, lin in self.lora_linears():
                out = add_rank(lin, neurons, scale=self.lora_scale, init=init, generator=generator)
                if isinstance(out, set):
                    res.added.update(f"{name}.{k}" for k in out)
                else:
                    res.changed.update({f"{name}.{k}": v for k, v in out.items()})
        return res

    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """Shrink ``point``; for ``lora`` drop ``neurons`` rank components (checked by :meth:`Backbone.shrink`)."""
        if point != POINT:
            return self._sync_attn(super()._shrink(point, neurons, rule=rule))
        have = self.width(POINT)
        n = neurons
        linears = self.lora_linears()
        if rule == "appended":
            keep = torch.arange(have - n)
        else:
            score = sum((lin.lora_A.detach().norm(dim=1) * lin.lora_B.detach().norm(dim=0)).cpu() for _, lin in linears)
            keep = torch.sort(torch.argsort(score, descending=True, stable=True)[: have - n]).values
        res = SurgeryResult(POINT, "shrink", n)
        with torch.no_grad():
            for name, lin in linears:
                out = keep_rank(lin, keep)
                if isinstance(out, set):
                    res.removed.update(f"{name}.{k}" for k in out)
                else:
                    res.changed.update({f"{name}.{k}": v for k, v in out.items()})
        return res

    def _sync_attn(self, res: SurgeryResult) -> SurgeryResult:
        """After a ``layer{i}.attn`` change, give the adapters' ``B`` the projection's rows."""
        if not res.point.endswith(".attn"):
            return res
        for name, lin in self.lora_linears():
            ch = res.changed.get(f"{name}.weight")
            if ch is None or not isinstance(lin, LoRALinear) or lin.lora_B.shape[0] == lin.out_features:
                continue
            b = lin.lora_B
            with torch.no_grad():
                if res.action == "grow":
                    pad = torch.zeros(lin.out_features - b.shape[0], b.shape[1], dtype=b.dtype, device=b.device)
                    new_b = torch.cat([b.detach(), pad], 0)
                    res.changed[f"{name}.lora_B"] = TensorChange.appended(tuple(b.shape), tuple(new_b.shape))
                else:
                    rows = ch.src[0]
                    new_b = b.detach()[rows.to(b.device)].clone()
                    res.changed[f"{name}.lora_B"] = TensorChange.kept(tuple(b.shape), {0: rows})
            lin.lora_B = nn.Parameter(new_b, requires_grad=b.requires_grad)
        return res


LORA_PRESETS: dict[str, dict[str, Any]] = {k: {**v, "lora_alpha": 16.0, "lora_rank": 8} for k, v in PRESETS.items()}


@register_backbone("wav2vec2_lora", presets=LORA_PRESETS, default_preset="base",
                   description="wav2vec2 plus a 'lora' growth point (rank-r adapters on q/v; the paper's LoRA baseline)")
def wav2vec2_lora(**kwargs: Any) -> Wav2Vec2LoRA:
    """Build a :class:`Wav2Vec2LoRA` (presets ``base``, ``small``, ``tiny`` as ``wav2vec2``)."""
    return Wav2Vec2LoRA(**kwargs)
