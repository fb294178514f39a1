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

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from growsearch.backbones.base import GrowthPoint
from growsearch.backbones.registry import register_backbone
from growsearch.backbones.wav2vec2 import _LAYERS, PRESETS, Wav2Vec2Backbone
from growsearch.errors import ConfigError
from growsearch.growth.init import default_uniform
from growsearch.growth.surgery import SurgeryResult, TensorChange
from growsearch.growth.widen import keep_appended, keep_largest, prefixed, set_param
from growsearch.vocabulary import INITS

__all__ = ["LORA_INITS", "LORA_TARGETS", "LoRALinear", "Wav2Vec2LoRA", "lora_trainable_formula"]

#: The attention projections that get adapters (the paper: q and v).
LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")
#: LoRA's inits: every init but ``net2net`` (a rank component has no unit to copy).
LORA_INITS: tuple[str, ...] = tuple(i for i in INITS if i != "net2net")
POINT = "lora"


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a low-rank adapter: ``y = x W^T + b + scale * (x A^T) B^T``.

    Built from an existing ``nn.Linear`` (by :func:`add_rank`), whose ``weight`` and ``bias``
    Parameters it shares under the same names, so state-dict keys are the Linear's plus
    ``lora_A`` ``(rank, in_features)`` and ``lora_B`` ``(out_features, rank)``.

    Shapes: ``(..., in_features)`` -> ``(..., out_features)``.
    """

    def __init__(self, base: nn.Linear, lora_A: torch.Tensor, lora_B: torch.Tensor, scale: float) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        _share_weights(base, self)
        self.lora_A = nn.Parameter(lora_A)
        self.lora_B = nn.Parameter(lora_B)
        self.lora_scale = float(scale)

    def plain(self) -> nn.Linear:
        """A plain ``nn.Linear`` sharing this one's ``weight`` and ``bias`` (the adapter dropped)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        _share_weights(self, lin)
        return lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        return y + self.lora_scale * F.linear(F.linear(x, self.lora_A), self.lora_B)

    @property
    def rank(self) -> int:
        return int(self.lora_A.shape[0])


def _share_weights(src: nn.Linear, dst: nn.Linear) -> None:
    """Give ``dst`` ``src``'s ``weight`` and ``bias`` Parameters (the same objects) and training mode."""
    dst.weight = src.weight
    dst.bias = src.bias
    dst.train(src.training)


def rank_of(lin: nn.Linear) -> int:
    """The adapter rank of ``lin`` (0 for a plain Linear)."""
    return lin.rank if isinstance(lin, LoRALinear) else 0


def add_rank(
    lin: nn.Linear, k: int, *, scale: float, init: str, generator: torch.Generator | None
) -> tuple[LoRALinear, dict[str, TensorChange] | set[str]]:
    """Add ``k`` rank components to ``lin``; a plain Linear becomes a new :class:`LoRALinear`
    sharing its ``weight`` and ``bias`` (the caller puts it in ``lin``'s place).

    Returns:
        ``(module, changes)``: the adapted Linear (``lin`` itself when it had adapters), and
        ``{"lora_A": change, "lora_B": change}`` for a Linear that had adapters, or the set
        ``{"lora_A", "lora_B"}`` of wholly new parameter names.
    """
    w = lin.weight
    a_new = default_uniform((k, lin.in_features), lin.in_features, generator, dtype=w.dtype).to(w.device)
    if init == "random":
        b_new = default_uniform((lin.out_features, k), rank_of(lin) + k, generator, dtype=w.dtype).to(w.device)
    elif init != "zero_fanout":
        raise ValueError(f"unknown LoRA init {init!r}; valid inits: {', '.join(LORA_INITS)}")
    else:
        b_new = torch.zeros(lin.out_features, k, dtype=w.dtype, device=w.device)
    if not isinstance(lin, LoRALinear):
        return LoRALinear(lin, a_new, b_new, scale), {"lora_A", "lora_B"}
    old_a, old_b = lin.lora_A, lin.lora_B
    changes = {
        "lora_A": TensorChange.appended(tuple(old_a.shape), (old_a.shape[0] + k, old_a.shape[1])),
        "lora_B": TensorChange.appended(tuple(old_b.shape), (old_b.shape[0], old_b.shape[1] + k)),
    }
    set_param(lin, "lora_A", torch.cat([old_a.detach(), a_new], 0))
    set_param(lin, "lora_B", torch.cat([old_b.detach(), b_new], 1))
    return lin, changes


def keep_rank(lin: LoRALinear, keep: torch.Tensor) -> tuple[nn.Linear, dict[str, TensorChange] | set[str]]:
    """Keep only rank components ``keep`` (sorted indices); none kept -> a plain Linear again.

    Returns:
        ``(module, changes)``: ``lin``, or the plain Linear sharing its weights when no
        component is kept; the index maps of ``lora_A``/``lora_B``, or the set of removed
        parameter names.
    """
    if len(keep) == 0:
        return lin.plain(), {"lora_A", "lora_B"}
    old_a, old_b = lin.lora_A, lin.lora_B
    changes = {"lora_A": TensorChange.kept(tuple(old_a.shape), {0: keep}),
               "lora_B": TensorChange.kept(tuple(old_b.shape), {1: keep})}
    set_param(lin, "lora_A", old_a.detach().index_select(0, keep.to(old_a.device)))
    set_param(lin, "lora_B", old_b.detach().index_select(1, keep.to(old_b.device)))
    return lin, changes


def component_norms(lin: LoRALinear) -> torch.Tensor:
    """Importance of each rank component of ``lin``: ``|A row| * |B column|``, ``(rank,)`` on the CPU."""
    return (lin.lora_A.detach().norm(dim=1) * lin.lora_B.detach().norm(dim=0)).cpu()


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
        return self._each_adapter(SurgeryResult(POINT, "grow", neurons),
                                  lambda lin: add_rank(lin, neurons, scale=self.lora_scale, init=init, generator=generator))

    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """Shrink ``point``; for ``lora`` drop ``neurons`` rank components (checked by :meth:`Backbone.shrink`)."""
        if point != POINT:
            return self._sync_attn(super()._shrink(point, neurons, rule=rule))
        have = self.width(POINT)
        n = neurons
        if rule == "appended":
            keep = keep_appended(have, n)
        else:
            adapters = [lin for _, lin in self.lora_linears() if isinstance(lin, LoRALinear)]
            keep = keep_largest(torch.stack([component_norms(lin) for lin in adapters]).sum(0), n)
        return self._each_adapter(SurgeryResult(POINT, "shrink", n), lambda lin: keep_rank(lin, keep))

    def _each_adapter(self, res: SurgeryResult, change: Callable[[Any], tuple[nn.Linear, Any]]) -> SurgeryResult:
        """Apply ``change`` (:func:`add_rank` / :func:`keep_rank`) to every adapted projection,
        put the module it returns in the projection's place, and record the changes in ``res``
        (wholly new parameters as added when growing, removed when shrinking)."""
        with torch.no_grad():
            for name, lin in self.lora_linears():
                new, out = change(lin)
                parent, _, attr = name.rpartition(".")
                setattr(self.get_submodule(parent), attr, new)
                if isinstance(out, set):
                    (res.added if res.action == "grow" else res.removed).update(f"{name}.{k}" for k in out)
                else:
                    res.changed.update(prefixed(name, out))
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
            set_param(lin, "lora_B", new_b)
        return res


LORA_PRESETS: dict[str, dict[str, Any]] = {k: {**v, "lora_alpha": 16.0, "lora_rank": 8} for k, v in PRESETS.items()}


@register_backbone("wav2vec2_lora", presets=LORA_PRESETS, default_preset="base",
                   description="wav2vec2 plus a 'lora' growth point (rank-r adapters on q/v; the paper's LoRA baseline)")
def wav2vec2_lora(**kwargs: Any) -> Wav2Vec2LoRA:
    """Build a :class:`Wav2Vec2LoRA` (presets ``base``, ``small``, ``tiny`` as ``wav2vec2``)."""
    return Wav2Vec2LoRA(**kwargs)
