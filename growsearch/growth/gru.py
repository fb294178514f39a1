"""Widening and narrowing of a single-layer, unidirectional ``nn.GRU`` in place.

PyTorch stacks the three gates [r | z | n] in one tensor: ``weight_ih_l0 (3H, in)``,
``weight_hh_l0 (3H, H)``, ``bias_ih_l0``/``bias_hh_l0 (3H,)``. Widening by ``k`` puts ``k``
new rows at the end of *each* gate block (so an old row ``g*H + i`` moves to
``g*(H+k) + i``), ``k`` new columns at the end of ``weight_hh``, and the next layer (a GRU's
``weight_ih`` or a Linear) gets ``k`` new input columns. The module stays an ``nn.GRU``
running the fused kernel: ``hidden_size``/``input_size`` are updated and the flat-weight
list is rebuilt (``RNNBase._init_flat_weights``).

Initialisers:

- ``random`` (the paper's GRNN): new rows Xavier-uniform, new biases zero; new units see the
  input, the old state and themselves; old units start not seeing new ones
  (``weight_hh[old rows, new cols] = 0``); consumer columns Xavier-uniform. That block stays
  zero only when the backbone declares it fixed (``lcgrnn`` with ``coupling: isolated``: the
  freeze policy masks it under every policy); otherwise it is a new entry that trains.
- ``zero_fanout``: as ``random`` but the consumer columns are zero: function-preserving.
- ``net2net``: a new unit copies the rows (all three gates, both biases) of a random existing
  unit; column ``j`` of ``weight_hh`` and of the consumer is split among ``j`` and its copies.
  The copy's state equals its source's at every step, so the output is unchanged (exactly in
  real arithmetic).
"""

from __future__ import annotations

import torch
from torch import nn

from growsearch.growth.init import INIT_NET2NET, INIT_RANDOM, INIT_ZERO_FANOUT, Net2NetPlan, xavier_uniform
from growsearch.growth.surgery import TensorChange
from growsearch.growth.widen import set_param

GATES = 3


def _check_plain(gru: nn.GRU) -> None:
    if not isinstance(gru, nn.GRU) or gru.num_layers != 1 or gru.bidirectional or gru.proj_size:
        raise ValueError("only single-layer unidirectional nn.GRU modules can be widened")


def gate_rows(hidden: int, idx: torch.Tensor) -> torch.Tensor:
    """Row indices of units ``idx`` in each of the three gate blocks of a ``(3H, ...)`` tensor."""
    idx = idx.to(torch.long)
    return torch.cat([g * hidden + idx for g in range(GATES)])


def refresh_flat_weights(gru: nn.GRU) -> None:
    """Rebuild the GRU's flat-weight list after its parameters were replaced."""
    gru._init_flat_weights()
    gru.flatten_parameters()


def _detached(gru: nn.GRU, name: str) -> torch.Tensor:
    """``gru.<name>.detach()`` (torch's stubs type the per-layer weights ``Tensor | Module``)."""
    return getattr(gru, name).detach()


def _params(gru: nn.GRU) -> list[str]:
    names = ["weight_ih_l0", "weight_hh_l0"]
    if gru.bias:
        names += ["bias_ih_l0", "bias_hh_l0"]
    return names


def widen_gru(gru: nn.GRU, k: int, *, init: str, generator: torch.Generator | None, plan: Net2NetPlan | None = None) -> dict[str, TensorChange]:
    """Add ``k`` hidden units to ``gru`` (see module docstring for the initialisers).

    Args:
        gru: a single-layer unidirectional ``nn.GRU``; ``weight_ih_l0 (3H, in)``.
        k: hidden units to add.
        init: ``random``, ``zero_fanout`` or ``net2net``.
        generator: randomness for the new rows.
        plan: required for ``net2net``.

    Returns:
        Changes by local parameter name (``weight_ih_l0``, ``weight_hh_l0``, biases).
    """
    _check_plain(gru)
    if init not in (INIT_RANDOM, INIT_ZERO_FANOUT, INIT_NET2NET):
        raise ValueError(f"unknown init {init!r}")
    if init == INIT_NET2NET and plan is None:
        raise ValueError("net2net widening needs a Net2NetPlan")
    h, hn = gru.hidden_size, gru.hidden_size + k
    old_rows = gate_rows(h, torch.arange(h))
    new_pos_old = gate_rows(hn, torch.arange(h))  # where old rows land
    new_pos_new = gate_rows(hn, torch.arange(h, hn))  # where new rows land
    changes: dict[str, TensorChange] = {}

    def place(old: torch.Tensor, new_rows: torch.Tensor, width: int | None = None) -> torch.Tensor:
        shape = (GATES * hn, *(old.shape[1:] if width is None else (width,)))
        out = old.new_zeros(shape)
        if old.dim() > 1:
            out[new_pos_old, : old.shape[1]] = old
        else:
            out[new_pos_old] = old
        out[new_pos_new] = new_rows
        return out

    # weight_ih: (3H, in) -> (3H', in)
    w_ih = _detached(gru, "weight_ih_l0")
    if init == INIT_NET2NET:
        assert plan is not None
        rows_ih = w_ih[gate_rows(h, plan.sources)]
    else:
        rows_ih = xavier_uniform((GATES * hn, w_ih.shape[1]), generator, dtype=w_ih.dtype).to(w_ih.device)[new_pos_new]
    new_ih = place(w_ih, rows_ih)
    # weight_hh: (3H, H) -> (3H', H')
    w_hh = _detached(gru, "weight_hh_l0")
    if init == INIT_NET2NET:
        assert plan is not None
        scaled, cols = plan.split_columns(w_hh, dim=1)
        wide = torch.cat([scaled, cols], dim=1)  # (3H, H')
        rows_hh = wide[gate_rows(h, plan.sources)]
        new_hh = place(wide, rows_hh)
    else:
        rows_hh = xavier_uniform((GATES * hn, hn), generator, dtype=w_hh.dtype).to(w_hh.device)[new_pos_new]
        new_hh = place(w_hh, rows_hh, width=hn)  # old rows x new cols stay 0
    src_ih = (old_rows, torch.arange(w_ih.shape[1]))
    changes["weight_ih_l0"] = TensorChange(tuple(w_ih.shape), tuple(new_ih.shape), src_ih, (new_pos_old, torch.arange(w_ih.shape[1])))
    changes["weight_hh_l0"] = TensorChange(tuple(w_hh.shape), tuple(new_hh.shape), (old_rows, torch.arange(h)), (new_pos_old, torch.arange(h)))
    set_param(gru, "weight_ih_l0", new_ih)
    set_param(gru, "weight_hh_l0", new_hh)
    if gru.bias:
        for name in ("bias_ih_l0", "bias_hh_l0"):
            b = getattr(gru, name).detach()
            if init == INIT_NET2NET:
                assert plan is not None
                nb = b[gate_rows(h, plan.sources)]
            else:
                nb = b.new_zeros(GATES * k)
            new_b = place(b, nb)
            changes[name] = TensorChange((GATES * h,), (GATES * hn,), (old_rows,), (new_pos_old,))
            set_param(gru, name, new_b)
    gru.hidden_size = hn
    refresh_flat_weights(gru)
    return changes


def widen_gru_input(gru: nn.GRU, k: int, *, init: str, generator: torch.Generator | None, plan: Net2NetPlan | None = None) -> dict[str, TensorChange]:
    """Add ``k`` input columns to ``gru`` (it consumes a widened layer).

    ``random``: Xavier-uniform columns (drawn for the new shape); ``zero_fanout``: zeros;
    ``net2net``: split the producer's source columns (``plan`` of the producer).

    Returns:
        ``{"weight_ih_l0": change}``.
    """
    _check_plain(gru)
    w = _detached(gru, "weight_ih_l0")
    if init == INIT_RANDOM:
        cols = xavier_uniform((w.shape[0], w.shape[1] + k), generator, dtype=w.dtype).to(w.device)[:, w.shape[1] :]
        new = torch.cat([w, cols], dim=1)
    elif init == INIT_ZERO_FANOUT:
        new = torch.cat([w, w.new_zeros((w.shape[0], k))], dim=1)
    elif init == INIT_NET2NET:
        if plan is None:
            raise ValueError("net2net widening needs a Net2NetPlan")
        scaled, cols = plan.split_columns(w, dim=1)
        new = torch.cat([scaled, cols], dim=1)
    else:
        raise ValueError(f"unknown init {init!r}")
    set_param(gru, "weight_ih_l0", new)
    gru.input_size = new.shape[1]
    refresh_flat_weights(gru)
    return {"weight_ih_l0": TensorChange.appended(tuple(w.shape), tuple(new.shape))}


def narrow_gru(gru: nn.GRU, keep: torch.Tensor) -> dict[str, TensorChange]:
    """Keep only hidden units ``keep`` (sorted indices) of ``gru``, in every gate block."""
    _check_plain(gru)
    h = gru.hidden_size
    keep = keep.to(torch.long)
    rows = gate_rows(h, keep)
    changes: dict[str, TensorChange] = {}
    w_ih = _detached(gru, "weight_ih_l0")
    changes["weight_ih_l0"] = TensorChange.kept(tuple(w_ih.shape), {0: rows})
    set_param(gru, "weight_ih_l0", w_ih[rows.to(w_ih.device)])
    w_hh = _detached(gru, "weight_hh_l0")
    changes["weight_hh_l0"] = TensorChange.kept(tuple(w_hh.shape), {0: rows, 1: keep})
    set_param(gru, "weight_hh_l0", w_hh[rows.to(w_hh.device)][:, keep.to(w_hh.device)])
    if gru.bias:
        for name in ("bias_ih_l0", "bias_hh_l0"):
            b = getattr(gru, name).detach()
            changes[name] = TensorChange.kept(tuple(b.shape), {0: rows})
            set_param(gru, name, b[rows.to(b.device)])
    gru.hidden_size = len(keep)
    refresh_flat_weights(gru)
    return changes


def narrow_gru_input(gru: nn.GRU, keep: torch.Tensor) -> dict[str, TensorChange]:
    """Keep only input columns ``keep`` (sorted indices) of ``gru``."""
    _check_plain(gru)
    keep = keep.to(torch.long)
    w = _detached(gru, "weight_ih_l0")
    set_param(gru, "weight_ih_l0", w[:, keep.to(w.device)])
    gru.input_size = len(keep)
    refresh_flat_weights(gru)
    return {"weight_ih_l0": TensorChange.kept(tuple(w.shape), {1: keep})}


def unit_norms(gru: nn.GRU) -> torch.Tensor:
    """L2 norm of each hidden unit's fan-in (its rows in all gates of ``weight_ih`` and
    ``weight_hh``): ``(H,)``."""
    h = gru.hidden_size
    sq = _detached(gru, "weight_ih_l0").pow(2).sum(1) + _detached(gru, "weight_hh_l0").pow(2).sum(1)  # (3H,)
    return sq.view(GATES, h).sum(0).sqrt()
