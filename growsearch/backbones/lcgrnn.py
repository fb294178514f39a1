"""LC-GRNN-style stacked-GRU backbone on LFCC (``lcgrnn``), growable per GRU layer.

Architecture (preset ``paper``): LFCC ``(B, 60, T)`` -> ``(B, T, 60)`` -> four stacked GRU
layers, each its own ``nn.GRU(batch_first=True)`` with hidden sizes 64/64/32/32 -> **mean of
the last layer's outputs over time** ``(B, H4)`` -> ``Linear(H4, 2)``. All weights are
Xavier-uniform and all biases zero at construction, as in the paper's GRNN code.

Options that reproduce the authors' model (preset ``authors``): ``frontend: cepstrum`` (20
DCT coefficients of the log power spectrum, no deltas; see
:class:`~growsearch.data.features.Cepstrum`), ``pooling: last`` (the last layer's final
hidden state instead of the time mean) and ``coupling: isolated``: grown units read the old
ones, but old units never read units grown after them. The old-rows x new-columns block
of ``weight_hh`` then stays exactly zero under every freeze policy and optimizer (it is
declared by :meth:`LCGRNN.fixed_entry_masks`, masked by the freeze policy like a frozen
entry) and is not counted as parameters. ``coupling: dense`` (default) lets that block
start at zero and train. ``isolated`` supports the ``random`` and ``zero_fanout`` inits
(``net2net`` splits recurrent columns among old units, which needs the dense block).

Growth points ``gru1`` .. ``gru4`` (1-based): hidden units of that GRU layer, ``inplace``
only (see :mod:`growsearch.growth.gru` for how the gates are widened and the initialisers);
the consumer is the next GRU's input weights, or the head Linear for ``gru4``. The paper
grows ``gru2`` by +64. Shrink: ``appended`` drops the last hidden units, ``magnitude`` the
units whose fan-in (all gates, input and recurrent) has the smallest L2 norm.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from growsearch.backbones.base import Backbone, GrowthPoint
from growsearch.backbones.registry import register_backbone
from growsearch.data.features import create_frontend
from growsearch.errors import ConfigError
from growsearch.growth.check import growth_point
from growsearch.growth.gru import narrow_gru, narrow_gru_input, unit_norms, widen_gru, widen_gru_input
from growsearch.growth.init import INIT_NET2NET, Net2NetPlan
from growsearch.growth.surgery import SurgeryResult
from growsearch.growth.widen import keep_appended, keep_largest, narrow_in, prefixed, widen_in
from growsearch.vocabulary import INITS, SHRINK_RULES

COUPLINGS: tuple[str, ...] = ("dense", "isolated")
POOLINGS: tuple[str, ...] = ("mean", "last")
FRONTENDS: dict[str, int] = {"lfcc": 60, "cepstrum": 20}  # front-end -> feature dimension


class LCGRNN(Backbone):
    """Stacked GRUs on LFCC (see module docstring).

    Args:
        hidden: hidden units of each GRU layer (the number of entries = number of layers).
        n_features: feature dimension of the front-end (default: 60 for ``lfcc`` = 20 LFCC +
            deltas + delta-deltas, 20 for ``cepstrum``).
        frontend: ``lfcc`` (ASVspoof baseline LFCC with deltas) or ``cepstrum`` (the authors').
        pooling: ``mean`` over time or the ``last`` hidden state of the last GRU layer.
        coupling: ``dense`` or ``isolated`` recurrent weights for grown units (module docstring).
    """

    input_kind = "lfcc"

    def __init__(self, *, hidden: tuple[int, ...] | list[int] = (64, 64, 32, 32), n_features: int | None = None,
                 frontend: str = "lfcc", pooling: str = "mean", coupling: str = "dense") -> None:
        super().__init__()
        if len(hidden) < 1 or any(int(h) <= 0 for h in hidden):
            raise TypeError(f"hidden needs one positive size per GRU layer, got {list(hidden)}")
        for key, val, valid in (("frontend", frontend, tuple(FRONTENDS)), ("pooling", pooling, POOLINGS), ("coupling", coupling, COUPLINGS)):
            if val not in valid:
                raise ConfigError(f"lcgrnn: {key} {val!r} is not one of {', '.join(valid)}")
        self.base_hidden = tuple(int(h) for h in hidden)
        self.frontend = create_frontend(frontend)
        self.input_kind = frontend  # type: ignore[misc]
        self.pooling, self.coupling = pooling, coupling
        # growth generation of every hidden unit, per layer (0 = built with the model)
        self._gens: list[list[int]] = [[0] * h for h in self.base_hidden]
        sizes = [FRONTENDS[frontend] if n_features is None else int(n_features), *self.base_hidden]
        self.grus = nn.ModuleList(nn.GRU(sizes[i], sizes[i + 1], batch_first=True) for i in range(len(self.base_hidden)))
        self.head = nn.Linear(self.base_hidden[-1], 2)
        with torch.no_grad():
            for m in [*self.grus, self.head]:
                for name, p in m.named_parameters():
                    if name.startswith("weight"):
                        nn.init.xavier_uniform_(p)
                    else:
                        p.zero_()

    def body(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features: ``(B, F, T)`` (LFCC: F = 60). Returns: logits ``(B, 2)``."""
        x = features.transpose(1, 2)  # (B, T, F)
        for gru in self.grus:
            x, _ = gru(x)  # (B, T, H)
        return self.head(x[:, -1] if self.pooling == "last" else x.mean(dim=1))

    def fixed_entry_masks(self) -> dict[str, torch.Tensor]:
        """``isolated`` coupling: ``grus.{i}.weight_hh_l0`` -> True where a unit would read a unit
        grown after it (rows of unit u in every gate, column of unit v, gen[v] > gen[u])."""
        if self.coupling != "isolated":
            return {}
        out: dict[str, torch.Tensor] = {}
        for i, gens in enumerate(self._gens):
            g = torch.tensor(gens)
            if not bool((g > 0).any()):
                continue
            blocked = g.view(1, -1) > g.view(-1, 1)  # (H rows, H cols)
            out[f"grus.{i}.weight_hh_l0"] = blocked.repeat(3, 1)  # gate blocks [r | z | n]
        return out

    # ---- growth ----------------------------------------------------------------------
    def growth_points(self) -> dict[str, GrowthPoint]:
        inits = INITS if self.coupling == "dense" else tuple(i for i in INITS if i != INIT_NET2NET)
        return {
            f"gru{i + 1}": GrowthPoint(
                f"gru{i + 1}", h, forms=("inplace",), inits=inits, shrink_rules=SHRINK_RULES, unit="hidden unit",
                description=f"hidden units of GRU layer {i + 1} ({self.coupling} recurrent coupling)",
            )
            for i, h in enumerate(self.base_hidden)
        }

    def _gru(self, i: int) -> nn.GRU:
        """GRU layer ``i`` (``nn.ModuleList`` indexing is typed ``Module``)."""
        return cast(nn.GRU, self.grus[i])

    def _index(self, point: str) -> int:
        growth_point(self.growth_points(), point)
        return int(point[3:]) - 1

    def width(self, point: str) -> int:
        return self._gru(self._index(point)).hidden_size

    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        """Add ``neurons`` hidden units to GRU layer ``point`` (checked by :meth:`Backbone.grow`)."""
        i = self._index(point)
        gru = self._gru(i)
        plan = Net2NetPlan.draw(gru.hidden_size, neurons, generator) if init == INIT_NET2NET else None
        res = SurgeryResult(point, "grow", neurons)
        res.changed.update(prefixed(f"grus.{i}", widen_gru(gru, neurons, init=init, generator=generator, plan=plan)))
        if i + 1 < len(self.grus):
            ch = widen_gru_input(self._gru(i + 1), neurons, init=init, generator=generator, plan=plan)
            res.changed.update(prefixed(f"grus.{i + 1}", ch))
        else:
            res.changed.update(prefixed("head", widen_in(self.head, neurons, init=init, generator=generator, plan=plan, xavier=True)))
        self._gens[i] = self._gens[i] + [max(self._gens[i]) + 1] * neurons
        return res

    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """Remove ``neurons`` hidden units from GRU layer ``point`` (checked by :meth:`Backbone.shrink`)."""
        i = self._index(point)
        gru = self._gru(i)
        n = neurons
        keep = keep_appended(gru.hidden_size, n) if rule == "appended" else keep_largest(unit_norms(gru), n)
        res = SurgeryResult(point, "shrink", n)
        res.changed.update(prefixed(f"grus.{i}", narrow_gru(gru, keep)))
        self._gens[i] = [self._gens[i][j] for j in keep.tolist()]
        if i + 1 < len(self.grus):
            res.changed.update(prefixed(f"grus.{i + 1}", narrow_gru_input(self._gru(i + 1), keep)))
        else:
            res.changed.update(prefixed("head", narrow_in(self.head, keep)))
        return res


_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"hidden": (64, 64, 32, 32)},
    "authors": {"hidden": (64, 64, 32, 32), "frontend": "cepstrum", "pooling": "last", "coupling": "isolated"},
    "tiny": {"hidden": (8, 8, 4, 4)},
    "tiny_authors": {"hidden": (8, 8, 4, 4), "frontend": "cepstrum", "pooling": "last", "coupling": "isolated"},
}


@register_backbone("lcgrnn", presets=_PRESETS, default_preset="paper", description="four stacked GRUs on LFCC (LC-GRNN style)")
def lcgrnn(**kwargs: Any) -> LCGRNN:
    """Build the ``lcgrnn`` backbone (see :class:`LCGRNN` for the options)."""
    return LCGRNN(**kwargs)
