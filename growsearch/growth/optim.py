"""Optimizers that follow the model through growth and shrinking.

After any surgery the optimizer must be rebuilt: a widened tensor is a *new* Parameter,
and an optimizer built before the surgery silently never updates it. The protocol::

    snap = snapshot_optimizer(optimizer, backbone)        # BEFORE the surgery
    results = [backbone.apply_event(ev) for ev in due]    # the surgery
    policy = FreezePolicy.build(backbone, results, freeze)
    optimizer = rebuild_optimizer(backbone, snap, results, mode="fresh",
                                  named_params=policy.trainable_named_parameters())

``fresh`` builds a new optimizer with no state (the paper). ``carry`` moves the per-parameter
state by name: Adam/AdamW ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` and SGD's
``momentum_buffer`` are zero-padded (grow) or sliced (shrink) with
:meth:`TensorChange.carry`; ``step`` is kept; unchanged parameters keep their state as is;
wholly new parameters start without state. Note that a carried ``step`` makes Adam's bias
correction ~1 for the new entries, so their first updates are larger than a fresh Adam's.

:func:`check_optimizer` raises when an optimizer does not hold exactly the trainable
parameters of a model — the stale-optimizer bug made loud.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from growsearch.errors import ConfigError
from growsearch.growth.freeze import merge_results
from growsearch.growth.surgery import SurgeryResult
from growsearch.vocabulary import OPTIMIZER_STATES, OPTIMIZERS

__all__ = ["OPTIMIZERS", "REBUILD_MODES", "build_optimizer", "check_optimizer", "rebuild_optimizer", "snapshot_optimizer"]

#: The optimizer-state modes of a rebuild (:data:`growsearch.vocabulary.OPTIMIZER_STATES`).
REBUILD_MODES = OPTIMIZER_STATES
#: Optimizers whose per-parameter state has the same meaning (carry between them is fine).
_FAMILY = {"adam": "adam", "adamw": "adam", "sgd": "sgd"}
_CLASS_TO_NAME = {torch.optim.Adam: "adam", torch.optim.AdamW: "adamw", torch.optim.SGD: "sgd"}


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]],
    *,
    name: str = "adam",
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """Build an optimizer over named parameters (names are kept in ``param_groups``).

    Args:
        named_params: ``(name, parameter)`` pairs, e.g. ``FreezePolicy.trainable_named_parameters()``.
        name: ``adam`` (L2 weight decay), ``adamw`` (decoupled) or ``sgd``.
        lr: learning rate (> 0).
        weight_decay: >= 0.
        betas: Adam/AdamW betas.
        eps: Adam/AdamW epsilon.
        momentum: SGD momentum.

    Raises:
        ConfigError: unknown optimizer name, a non-positive lr, negative weight decay,
            or no parameters to optimize.
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ConfigError(f"optimizer learning rate must be > 0 (got {lr})")
    if weight_decay < 0:
        raise ConfigError(f"optimizer weight_decay must be >= 0 (got {weight_decay})")
    params = [(n, p) for n, p in named_params]
    if not params:
        raise ConfigError("the optimizer has no parameters to train (everything is frozen)")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """``adam``, ``adamw`` or ``sgd`` for an optimizer built by :func:`build_optimizer`."""
    for cls, n in _CLASS_TO_NAME.items():
        if type(optimizer) is cls:
            return n
    raise ConfigError(f"unsupported optimizer {type(optimizer).__name__}; valid optimizers: {', '.join(OPTIMIZERS)}")


def snapshot_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    """Record an optimizer's settings and per-parameter state by parameter name.

    Call it *before* the surgery, while the optimizer's parameters are still the model's.
    The state tensors are referenced, not copied: do not step the old optimizer afterwards.

    Returns:
        ``{"name": "adam", "hparams": {"lr", "weight_decay", ...}, "state": {param_name: {key: tensor}}}``.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    group = optimizer.param_groups[0]
    hp = {k: group[k] for k in ("lr", "weight_decay", "betas", "eps", "momentum") if k in group}
    if "betas" in hp:
        hp["betas"] = tuple(float(b) for b in hp["betas"])
    state: dict[str, dict[str, Any]] = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            if p in optimizer.state and id(p) in names:
                state[names[id(p)]] = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in optimizer.state[p].items()}
    return {"name": optimizer_name(optimizer), "hparams": hp, "state": state}


def _carry_state(st: dict[str, Any], change: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in st.items():
        if torch.is_tensor(v) and change is not None and tuple(v.shape) == tuple(change.old_shape) and v.dim() > 0:
            out[k] = change.carry(v)
        elif torch.is_tensor(v):
            if v.dim() > 0 and tuple(v.shape) != shape:
                raise RuntimeError(f"optimizer state {k!r} of shape {tuple(v.shape)} does not fit parameter shape {shape}")
            out[k] = v.clone()
        else:
            out[k] = v
    return out


def rebuild_optimizer(
    model: nn.Module,
    snapshot: dict[str, Any] | None,
    results: Sequence[SurgeryResult],
    *,
    mode: str = "fresh",
    named_params: Iterable[tuple[str, nn.Parameter]] | None = None,
    name: str | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """A new optimizer for the grown/shrunk model, ``fresh`` or with ``carry``-ied moments.

    Args:
        model: the module the results' names are relative to (the backbone).
        snapshot: :func:`snapshot_optimizer` taken before the surgery (``None``: there was
            no optimizer yet; ``carry`` then has nothing to carry).
        results: the surgery results since the snapshot, in order.
        mode: ``fresh`` or ``carry``.
        named_params: what to optimize (default: the model's parameters with ``requires_grad``).
        name, lr, weight_decay: override the snapshot's optimizer and settings (e.g. a new
            phase's learning rate); ``name`` and ``lr`` are required without a snapshot.
        **kwargs: further :func:`build_optimizer` options (betas, eps, momentum).

    Raises:
        ConfigError: unknown mode or optimizer, a missing lr, or ``carry`` between optimizer
            families (SGD momentum cannot seed Adam moments).
    """
    if mode not in REBUILD_MODES:
        raise ConfigError(f"unknown optimizer rebuild mode {mode!r}; valid modes: {', '.join(REBUILD_MODES)}")
    hp: dict[str, Any] = dict(snapshot["hparams"]) if snapshot else {}
    opt_name = name or (snapshot["name"] if snapshot else None)
    if opt_name is None:
        raise ConfigError("rebuild_optimizer needs an optimizer name when there is no snapshot")
    if lr is not None:
        hp["lr"] = lr
    if weight_decay is not None:
        hp["weight_decay"] = weight_decay
    if "lr" not in hp:
        raise ConfigError("rebuild_optimizer needs a learning rate when there is no snapshot")
    hp.update(kwargs)
    if opt_name != "sgd":
        hp.pop("momentum", None)
    else:
        hp.pop("betas", None)
        hp.pop("eps", None)
    if named_params is None:
        named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    named = list(named_params)
    opt = build_optimizer(named, name=opt_name, **hp)
    if mode == "fresh" or not snapshot:
        return opt
    if _FAMILY[snapshot["name"]] != _FAMILY[opt_name]:
        raise ConfigError(f"cannot carry {snapshot['name']} state into {opt_name}; use optimizer 'fresh'")
    merged = merge_results(results)
    changes = merged.changed if merged is not None else {}
    added = merged.added if merged is not None else set()
    for n, p in named:
        st = snapshot["state"].get(n)
        if st is None or n in added:
            continue
        opt.state[p] = _carry_state(st, changes.get(n), tuple(p.shape))
    return opt


def check_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Raise unless ``optimizer`` holds exactly ``model``'s trainable parameters.

    Catches the stale-optimizer bug: an optimizer built before a surgery holds the old
    tensors, so a widened parameter is never updated.

    Raises:
        RuntimeError: a trainable parameter is missing from the optimizer, or the optimizer
            holds a tensor that is not (any longer) a trainable parameter of the model.
    """
    in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for i, n in trainable.items() if i not in in_opt]
    stale = len(in_opt - set(trainable))
    if missing or stale:
        raise RuntimeError(
            f"stale optimizer: {len(missing)} trainable parameter(s) not in it (e.g. {missing[:3]}), "
            f"{stale} tensor(s) in it that the model no longer trains; rebuild it after every surgery"
        )
