"""What trains during a phase: the freeze policy and the optimizer over what it trains.

A *phase* starts at epoch 0 and at every epoch with growth events. At a phase start the
loop calls :func:`start_phase`, which builds the freeze policy (``all``, ``new_only`` or ``new_units``)
from that epoch's :class:`~growsearch.growth.surgery.SurgeryResult`\\ s and rebuilds the
optimizer over the parameters the policy trains: ``fresh``, or ``carry``-ing the moments
of surviving entries (zero for new entries) from a snapshot taken before the surgery.
:func:`restore_phase` rebuilds both from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from growsearch.growth.freeze import FreezePolicy
from growsearch.growth.optim import build_optimizer, rebuild_optimizer, snapshot_optimizer
from growsearch.growth.surgery import SurgeryResult

__all__ = ["Phase", "current_lr", "make_scheduler", "restore_phase", "snapshot", "start_phase"]


@dataclass
class Phase:
    """The optimizer and freeze policy of the current phase.

    Attributes:
        optimizer: built over ``freeze.trainable_named_parameters()``.
        freeze: the freeze policy.
        lr: the learning rate the phase started with.
        start_epoch: first epoch of the phase.
    """

    optimizer: torch.optim.Optimizer
    freeze: FreezePolicy
    lr: float
    start_epoch: int

    def trainable_count(self) -> int:
        """Number of parameter entries that train (masked old entries excluded)."""
        return self.freeze.trainable_entries()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "freeze": self.freeze.state_dict(),
                "lr": self.lr, "start_epoch": self.start_epoch}


def snapshot(optimizer: torch.optim.Optimizer, model: nn.Module) -> Any:
    """The optimizer state by parameter name, taken before surgery (for ``carry``)."""
    return snapshot_optimizer(optimizer, model)


def start_phase(
    model: nn.Module,
    *,
    results: Sequence[SurgeryResult],
    policy: str,
    optimizer_name: str,
    lr: float,
    weight_decay: float,
    mode: str = "fresh",
    snap: Any = None,
    start_epoch: int = 0,
    extra_trainable: Sequence[str] = (),
) -> Phase:
    """Build the freeze policy and the optimizer of a phase.

    Args:
        model: the backbone after this epoch's surgery.
        results: this epoch's surgery results in the order applied (empty at epoch 0).
        policy: ``all``, ``new_only`` or ``new_units``.
        optimizer_name: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate of the phase.
        weight_decay: weight decay.
        mode: ``fresh`` or ``carry``.
        snap: :func:`snapshot` of the previous optimizer (needed for ``carry``).
        start_epoch: first epoch of the phase.
        extra_trainable: name prefixes that train fully under ``new_only`` (e.g. ``head``).
    """
    freeze = FreezePolicy.build(model, list(results), policy, extra_trainable=tuple(extra_trainable))
    opt = rebuild_optimizer(model, snap, list(results), mode=mode, named_params=freeze.trainable_named_parameters(),
                            name=optimizer_name, lr=lr, weight_decay=weight_decay, **_extra(optimizer_name))
    return Phase(opt, freeze, lr, start_epoch)


def _extra(optimizer_name: str) -> dict[str, Any]:
    """SGD runs with momentum 0.9; Adam/AdamW with their defaults."""
    return {"momentum": 0.9} if optimizer_name == "sgd" else {}


def restore_phase(model: nn.Module, state: dict[str, Any], *, optimizer_name: str, weight_decay: float) -> Phase:
    """Rebuild a phase from :meth:`Phase.state_dict` for ``model`` (weights already loaded)."""
    freeze = FreezePolicy.from_state_dict(model, state["freeze"])
    opt = build_optimizer(freeze.trainable_named_parameters(), name=optimizer_name, lr=float(state["lr"]),
                          weight_decay=weight_decay, **_extra(optimizer_name))
    opt.load_state_dict(state["optimizer"])
    return Phase(opt, freeze, float(state["lr"]), int(state["start_epoch"]))


def make_scheduler(kind: str, optimizer: torch.optim.Optimizer) -> Any:
    """The phase's LR scheduler: ``plateau`` (ReduceLROnPlateau on the dev EER, factor 0.5,
    patience 2) or ``None`` for ``none``. Rebuilt with every phase's optimizer."""
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
    return None


def current_lr(phase: Phase) -> float:
    """The learning rate the phase's optimizer uses now (its start LR if it has no groups)."""
    return float(phase.optimizer.param_groups[0]["lr"]) if phase.optimizer.param_groups else phase.lr
