"""Initialisers for new units, all drawing from an explicit ``torch.Generator``.

Three initialisers exist (``growsearch.vocabulary.INITS``):

- ``random`` (the paper): a widened tensor is drawn afresh as the layer's own initialiser
  would draw a tensor of the *new* shape, and the old values are copied into it. New fan-in
  and new fan-out are random, so growth is not function-preserving.
- ``zero_fanout``: new fan-in rows are drawn like ``random``; new fan-out columns are zero,
  so the old outputs are reproduced exactly.
- ``net2net``: every new unit copies a randomly chosen existing unit (its fan-in rows and,
  for BatchNorm, its parameters and statistics); the fan-out column of a source unit is
  split equally among it and its copies (Chen et al., Net2Net, 2016).

This module holds the pieces shared by the layer-specific widening code in
:mod:`growsearch.growth.widen` and :mod:`growsearch.growth.gru`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

INIT_RANDOM = "random"
INIT_ZERO_FANOUT = "zero_fanout"
INIT_NET2NET = "net2net"


def default_uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator | None, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """PyTorch's default Linear/Conv initialiser: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    ``kaiming_uniform_(a=sqrt(5))`` for weights and the bias rule both reduce to this bound.

    Args:
        shape: shape of the tensor to draw.
        fan_in: fan-in of the layer the tensor belongs to (in-features x kernel size).
        generator: source of randomness.

    Returns:
        A tensor of ``shape``.
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=generator)


def redraw_default_(module: torch.nn.Module, generator: torch.Generator | None) -> None:
    """Re-draw every Linear/Conv weight and bias inside ``module`` (itself included) in place
    with PyTorch's default initialiser (:func:`default_uniform` for the layer's fan-in), drawing
    from ``generator`` in ``module.modules()`` order, weight before bias."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear | torch.nn.Conv1d | torch.nn.Conv2d):
                w = m.weight
                fan_in = w.shape[1] * math.prod(w.shape[2:])
                w.copy_(default_uniform(tuple(w.shape), fan_in, generator, dtype=w.dtype))
                if m.bias is not None:
                    m.bias.copy_(default_uniform(tuple(m.bias.shape), fan_in, generator, dtype=m.bias.dtype))


def xavier_uniform(shape: tuple[int, ...], generator: torch.Generator | None, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Xavier/Glorot-uniform draw for a 2-D ``(fan_out, fan_in)`` tensor, as ``nn.init.xavier_uniform_``."""
    t = torch.empty(shape, dtype=dtype)
    torch.nn.init.xavier_uniform_(t, generator=generator)
    return t


@dataclass(frozen=True)
class Net2NetPlan:
    """Which existing unit each new unit copies, and by how much fan-out columns are divided.

    Attributes:
        sources: ``(k,)`` index of the existing unit each new unit copies.
        divisor: ``(width,)`` 1 + number of copies made of each existing unit.
    """

    sources: torch.Tensor
    divisor: torch.Tensor

    @staticmethod
    def draw(width: int, k: int, generator: torch.Generator | None) -> Net2NetPlan:
        """Choose ``k`` source units uniformly (with replacement) among ``width`` existing ones."""
        sources = torch.randint(0, width, (k,), generator=generator)
        divisor = 1.0 + torch.bincount(sources, minlength=width).to(torch.float32)
        return Net2NetPlan(sources, divisor)

    def split_columns(self, old: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Split fan-out along ``dim``: old columns divided, new columns copied from the divided sources.

        Args:
            old: a tensor whose ``dim`` has size ``width`` (one slice per existing unit).
            dim: the unit dimension.

        Returns:
            ``(old_scaled, new)``: ``old`` with each unit's slice divided by its divisor, and the
            ``k`` new slices (``old_scaled`` indexed by ``sources``).
        """
        shape = [1] * old.dim()
        shape[dim] = -1
        scaled = old / self.divisor.to(device=old.device, dtype=old.dtype).view(shape)
        return scaled, scaled.index_select(dim, self.sources.to(old.device))

    def expand(self, unit: int) -> Net2NetPlan:
        """The same plan over rows, for units of ``unit`` consecutive rows each.

        Unit ``j`` is rows ``j * unit ... j * unit + unit - 1`` (an attention head is
        ``head_dim`` rows of ``q/k/v_proj``); a copied unit copies all its rows, and each
        row's divisor is its unit's.
        """
        if unit == 1:
            return self
        return Net2NetPlan(unit_rows(self.sources, unit), self.divisor.repeat_interleave(unit))


def unit_rows(units: torch.Tensor, unit: int) -> torch.Tensor:
    """Row indices of ``units`` (each ``unit`` consecutive rows), in order: ``(n,)`` -> ``(n * unit,)``."""
    units = units.to(torch.long)
    return (units[:, None] * unit + torch.arange(unit)[None, :]).reshape(-1)


def check_init(init: str, allowed: tuple[str, ...], where: str) -> None:
    """Raise a ScheduleError naming ``where`` if ``init`` is not among ``allowed``."""
    from growsearch.errors import ScheduleError

    if init not in allowed:
        raise ScheduleError(f"{where}: unknown init {init!r}; valid inits: {', '.join(allowed)}")
