"""Widening and narrowing of ``nn.Linear``, ``nn.Conv2d`` and ``nn.BatchNorm2d/1d`` in place.

A *producer* gains output units (new fan-in rows, dim 0 of ``weight``, and bias entries);
a *consumer* gains input columns (dim 1 of ``weight``); a BatchNorm between them gains
channels. Every function replaces the module's parameters (and buffers) by new tensors
holding the old values, updates the module's size attributes, and returns the
:class:`~growsearch.growth.surgery.TensorChange` of each tensor by its local name
(``weight``, ``bias``, ``running_mean``...). New units are always appended at the end.

A *unit* may span several consecutive rows: :func:`widen_units`, :func:`narrow_units` and
:func:`unit_scores` treat ``unit`` rows of one or more producers (and the matching columns
of their consumer) as one unit, e.g. an attention head (``head_dim`` rows of each of
``q/k/v_proj``, ``head_dim`` columns of ``out_proj``) or an FFN neuron (``unit=1``).

Shapes: Linear ``weight (out, in)``; Conv2d ``weight (out, in, kh, kw)``; BatchNorm
``weight, bias, running_mean, running_var (channels,)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from growsearch.growth.init import INIT_NET2NET, INIT_RANDOM, INIT_ZERO_FANOUT, Net2NetPlan, default_uniform, unit_rows, xavier_uniform
from growsearch.growth.surgery import TensorChange

Layer = nn.Linear | nn.Conv2d | nn.Conv1d
Norm = nn.BatchNorm1d | nn.BatchNorm2d


def set_param(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace parameter ``name`` of ``module`` by a new Parameter holding ``value``.

    Device, dtype and ``requires_grad`` are taken from the old parameter; the new one is
    contiguous.
    """
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(value.to(device=old.device, dtype=old.dtype).contiguous(), requires_grad=old.requires_grad))


def set_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace buffer ``name`` of ``module`` by ``value`` (device and dtype of the old one)."""
    old = getattr(module, name)
    setattr(module, name, value.to(device=old.device, dtype=old.dtype))


def _fan_in(weight: torch.Tensor) -> int:
    return weight.shape[1] * math.prod(weight.shape[2:])


def _set_width(module: Layer, *, out: int | None = None, inp: int | None = None) -> None:
    if isinstance(module, nn.Linear):
        if out is not None:
            module.out_features = out
        if inp is not None:
            module.in_features = inp
    else:
        if out is not None:
            module.out_channels = out
        if inp is not None:
            module.in_channels = inp


def widen_out(module: Layer, k: int, *, init: str, generator: torch.Generator | None, plan: Net2NetPlan | None = None) -> dict[str, TensorChange]:
    """Append ``k`` output units (fan-in rows) to a Linear/Conv layer.

    ``random`` and ``zero_fanout`` draw the new rows (and bias entries) with PyTorch's
    default initialiser; ``net2net`` copies the rows of ``plan.sources``.

    Args:
        module: the producer layer, ``weight (out, in, ...)``.
        k: units to add.
        init: ``random``, ``zero_fanout`` or ``net2net``.
        generator: randomness for new rows.
        plan: required for ``net2net``: which existing unit each new unit copies.

    Returns:
        Changes by local name (``weight``, ``bias`` when present).
    """
    w = module.weight.detach()
    changes: dict[str, TensorChange] = {}
    if init == INIT_NET2NET:
        if plan is None:
            raise ValueError("net2net widening needs a Net2NetPlan")
        rows = w.index_select(0, plan.sources.to(w.device))
    elif init in (INIT_RANDOM, INIT_ZERO_FANOUT):
        rows = default_uniform((k, *w.shape[1:]), _fan_in(w), generator, dtype=w.dtype).to(w.device)
    else:
        raise ValueError(f"unknown init {init!r}")
    new_w = torch.cat([w, rows], dim=0)
    changes["weight"] = TensorChange.appended(tuple(w.shape), tuple(new_w.shape))
    set_param(module, "weight", new_w)
    if module.bias is not None:
        b = module.bias.detach()
        if init == INIT_NET2NET:
            assert plan is not None
            nb = b.index_select(0, plan.sources.to(b.device))
        else:
            nb = default_uniform((k,), _fan_in(w), generator, dtype=b.dtype).to(b.device)
        new_b = torch.cat([b, nb])
        changes["bias"] = TensorChange.appended(tuple(b.shape), tuple(new_b.shape))
        set_param(module, "bias", new_b)
    _set_width(module, out=new_w.shape[0])
    return changes


def widen_in(
    module: Layer,
    k: int,
    *,
    init: str,
    generator: torch.Generator | None,
    plan: Net2NetPlan | None = None,
    offset: int | None = None,
    xavier: bool = False,
) -> dict[str, TensorChange]:
    """Append ``k`` input columns to a Linear/Conv layer consuming a widened producer.

    ``random``: new columns drawn with PyTorch's default initialiser for the new fan-in;
    ``zero_fanout``: zero columns (function-preserving); ``net2net``: the producer's source
    columns are split among the source and its copies (function-preserving).

    Args:
        module: the consumer, ``weight (out, in, ...)``.
        k: columns to add.
        init: ``random``, ``zero_fanout`` or ``net2net``.
        generator: randomness for ``random`` columns.
        plan: for ``net2net``: the producer's plan; its unit ``j`` is column ``offset + j``.
        offset: first column of the producer's units in this consumer (default 0).
        xavier: draw ``random`` columns Xavier-uniform for the new shape instead (the GRNN).

    Returns:
        ``{"weight": change}`` (the bias does not change).
    """
    w = module.weight.detach()
    out, cin = w.shape[0], w.shape[1]
    rest = tuple(w.shape[2:])
    if init == INIT_RANDOM:
        new_fan_in = (cin + k) * math.prod(rest)
        if xavier:
            cols = xavier_uniform((out, cin + k, *rest), generator, dtype=w.dtype)[:, cin:].to(w.device)
        else:
            cols = default_uniform((out, k, *rest), new_fan_in, generator, dtype=w.dtype).to(w.device)
        new_w = torch.cat([w, cols], dim=1)
    elif init == INIT_ZERO_FANOUT:
        new_w = torch.cat([w, w.new_zeros((out, k, *rest))], dim=1)
    elif init == INIT_NET2NET:
        if plan is None:
            raise ValueError("net2net widening needs a Net2NetPlan")
        off = 0 if offset is None else offset
        width = plan.divisor.numel()
        block = w[:, off : off + width]
        scaled, cols = plan.split_columns(block, dim=1)
        new_w = torch.cat([w[:, :off], scaled, w[:, off + width :], cols], dim=1)
    else:
        raise ValueError(f"unknown init {init!r}")
    set_param(module, "weight", new_w)
    _set_width(module, inp=new_w.shape[1])
    return {"weight": TensorChange.appended(tuple(w.shape), tuple(new_w.shape))}


def widen_norm(bn: Norm, k: int, *, plan: Net2NetPlan | None = None) -> dict[str, TensorChange]:
    """Append ``k`` channels to a BatchNorm: neutral (weight 1, bias 0, mean 0, var 1), or,
    with a ``net2net`` plan, copies of the source channels' parameters and statistics.

    Returns:
        Changes of ``weight``, ``bias``, ``running_mean``, ``running_var`` (those present).
    """
    changes: dict[str, TensorChange] = {}
    neutral = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
    for name, fill in neutral.items():
        t = getattr(bn, name, None)
        if t is None:
            continue
        old = t.detach()
        extra = old.index_select(0, plan.sources.to(old.device)) if plan is not None else old.new_full((k,), fill)
        new = torch.cat([old, extra])
        changes[name] = TensorChange.appended(tuple(old.shape), tuple(new.shape))
        if isinstance(t, nn.Parameter):
            set_param(bn, name, new)
        else:
            set_buffer(bn, name, new)
    bn.num_features += k
    return changes


def narrow_out(module: Layer, keep: torch.Tensor) -> dict[str, TensorChange]:
    """Keep only output units ``keep`` (sorted indices) of a Linear/Conv layer."""
    changes: dict[str, TensorChange] = {}
    keep = keep.to(torch.long)
    for name in ("weight", "bias"):
        t = getattr(module, name, None)
        if t is None:
            continue
        old = t.detach()
        changes[name] = TensorChange.kept(tuple(old.shape), {0: keep})
        set_param(module, name, old.index_select(0, keep.to(old.device)))
    _set_width(module, out=len(keep))
    return changes


def narrow_in(module: Layer, keep: torch.Tensor) -> dict[str, TensorChange]:
    """Keep only input columns ``keep`` (sorted indices) of a Linear/Conv layer."""
    keep = keep.to(torch.long)
    old = module.weight.detach()
    set_param(module, "weight", old.index_select(1, keep.to(old.device)))
    _set_width(module, inp=len(keep))
    return {"weight": TensorChange.kept(tuple(old.shape), {1: keep})}


def narrow_norm(bn: Norm, keep: torch.Tensor) -> dict[str, TensorChange]:
    """Keep only channels ``keep`` (sorted indices) of a BatchNorm, statistics included."""
    keep = keep.to(torch.long)
    changes: dict[str, TensorChange] = {}
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(bn, name, None)
        if t is None:
            continue
        old = t.detach()
        changes[name] = TensorChange.kept(tuple(old.shape), {0: keep})
        new = old.index_select(0, keep.to(old.device))
        if isinstance(t, nn.Parameter):
            set_param(bn, name, new)
        else:
            set_buffer(bn, name, new)
    bn.num_features = len(keep)
    return changes


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each fan-in row: ``(out, ...)`` -> ``(out,)``."""
    return weight.detach().flatten(1).norm(dim=1)


def keep_appended(width: int, n: int) -> torch.Tensor:
    """Indices kept when the last ``n`` of ``width`` units are removed."""
    return torch.arange(width - n)


def keep_largest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted indices kept when the ``n`` units with the smallest ``scores`` are removed
    (ties broken towards removing the later unit)."""
    width = scores.numel()
    # stable sort of -scores: among equal scores, earlier units rank first (kept)
    order = torch.sort(-scores.detach().cpu(), stable=True).indices
    return torch.sort(order[: width - n]).values


def prefixed(prefix: str, changes: dict[str, TensorChange]) -> dict[str, TensorChange]:
    """``{prefix + "." + name: change}``."""
    return {f"{prefix}.{k}": v for k, v in changes.items()}


def _sublayer(owner: nn.Module, name: str) -> Layer:
    mod = owner.get_submodule(name)
    if not isinstance(mod, nn.Linear | nn.Conv2d | nn.Conv1d):
        raise TypeError(f"{name}: expected a Linear or Conv layer, got {type(mod).__name__}")
    return mod


def widen_units(
    owner: nn.Module,
    producers: Sequence[str],
    consumer: str,
    k: int,
    *,
    unit: int = 1,
    init: str,
    generator: torch.Generator | None,
) -> dict[str, TensorChange]:
    """Append ``k`` units of ``unit`` rows each to every producer and their columns to the consumer.

    The producers share one unit layout (row ``j * unit + r`` is row ``r`` of unit ``j`` in
    each); the consumer's input columns follow the same layout. ``net2net`` draws one plan
    over units, so a copied unit copies all its rows in every producer.

    Args:
        owner: the module holding the layers.
        producers: submodule names (relative to ``owner``) of the producer Linear/Conv layers.
        consumer: submodule name of the layer that reads the producers' units.
        k: units to add (``k * unit`` rows).
        unit: rows per unit.
        init: ``random``, ``zero_fanout`` or ``net2net``.
        generator: randomness for new rows/columns and the ``net2net`` sources.

    Returns:
        Changes by name relative to ``owner`` (``q_proj.weight``, ``out_proj.weight``...).
    """
    cons = _sublayer(owner, consumer)
    width = cons.weight.shape[1]
    plan = Net2NetPlan.draw(width // unit, k, generator).expand(unit) if init == INIT_NET2NET else None
    changes: dict[str, TensorChange] = {}
    for name in producers:
        changes.update(prefixed(name, widen_out(_sublayer(owner, name), k * unit, init=init, generator=generator, plan=plan)))
    changes.update(prefixed(consumer, widen_in(cons, k * unit, init=init, generator=generator, plan=plan)))
    return changes


def narrow_units(owner: nn.Module, producers: Sequence[str], consumer: str, keep: torch.Tensor, *, unit: int = 1) -> dict[str, TensorChange]:
    """Keep only units ``keep`` (sorted unit indices, ``unit`` rows each) of the producers and consumer.

    Returns:
        Changes by name relative to ``owner``.
    """
    rows = unit_rows(keep, unit)
    changes: dict[str, TensorChange] = {}
    for name in producers:
        changes.update(prefixed(name, narrow_out(_sublayer(owner, name), rows)))
    changes.update(prefixed(consumer, narrow_in(_sublayer(owner, consumer), rows)))
    return changes


def unit_scores(owner: nn.Module, producers: Sequence[str], consumer: str, *, unit: int = 1) -> torch.Tensor:
    """Importance of each unit: the L2 norm of its fan-in rows (weights of all producers)
    times the L2 norm of its fan-out columns in the consumer; ``(units,)`` on the CPU."""
    cons = _sublayer(owner, consumer).weight.detach()
    n = cons.shape[1] // unit
    fan_in = torch.stack([_sublayer(owner, p).weight.detach().reshape(n, -1).pow(2).sum(1) for p in producers]).sum(0)
    fan_out = cons.transpose(0, 1).reshape(n, -1).pow(2).sum(1)
    return (fan_in.sqrt() * fan_out.sqrt()).cpu()
