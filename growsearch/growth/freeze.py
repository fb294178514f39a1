"""What trains after growth: the ``all``, ``new_only`` and ``new_units`` freeze policies.

``all``
    Every parameter trains (parameters frozen by an earlier ``new_only`` policy are
    released; parameters a backbone froze itself stay frozen).
``new_only``
    Only entries that are new in this epoch's :class:`~growsearch.growth.surgery.SurgeryResult`\\ s
    learn: wholly added parameters (a parallel branch) and, inside a widened tensor, the
    entries not covered by :attr:`TensorChange.dst`. Parameters without new entries get
    ``requires_grad = False`` and are left out of the optimizer. Inside a widened tensor
    the old entries stay *bit-identical* whatever the optimizer does (Adam's L2 term,
    AdamW's decoupled decay, carried moments): :meth:`FreezePolicy.before_step` zeroes
    their gradients and :meth:`FreezePolicy.after_step` writes their saved values back.
    Buffers are not frozen: BatchNorm running statistics of old channels keep tracking
    their inputs, because new fan-in entries (trainable) change what old channels see;
    frozen statistics would leave eval-mode normalisation behind the trained model.
``new_units``
    Only the new units' own parameters learn: of the new entries, those in a new *row*
    (dim 0: a new output channel / neuron / gate row, its bias and norm entries) and wholly
    added parameters. The consumers' new input columns (the next layer reading the new units,
    old GRU units reading new ones) stay fixed at their init, like the old entries. This is
    the authors' frozen regime for ResNet18 and LC-GRNN (their new units are separate modules;
    the consumers are frozen old layers).

Fixed entries: a backbone may declare entries that are structurally zero and are not
parameters (``fixed_entry_masks()`` on any submodule, e.g. the old-rows x new-columns block
of an isolated GRU's ``weight_hh``). Under *every* policy they are masked like frozen old
entries (gradient zeroed, value written back), so no optimizer, weight decay or carried
moment moves them; :func:`count_fixed` tells parameter counts to leave them out.

Use in a training step::

    policy = FreezePolicy.build(backbone, results, "new_only")
    optimizer = build_optimizer(policy.trainable_named_parameters(), name="adam", lr=1e-3)
    loss.backward()
    policy.before_step()          # before gradient clipping, so the norm sees only new entries
    optimizer.step()
    policy.after_step()

Names in the results are relative to the module passed to :meth:`FreezePolicy.build`
(the backbone that was grown), not to a wrapper around it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import nn

from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.surgery import SurgeryResult
from growsearch.vocabulary import FREEZES

__all__ = ["FREEZE_POLICIES", "FreezePolicy", "count_fixed", "fixed_entries", "merge_results"]

#: The freeze policies (:data:`growsearch.vocabulary.FREEZES`).
FREEZE_POLICIES = FREEZES

#: Attribute set on parameters that a ``new_only`` policy froze (so ``all`` can release them).
_FROZEN_FLAG = "_growsearch_frozen"


def merge_results(results: Sequence[SurgeryResult]) -> SurgeryResult | None:
    """Compose the results of one epoch's events, in the order they were applied.

    Returns:
        One result whose ``changed`` maps old to final shapes, or ``None`` for no results.
    """
    merged: SurgeryResult | None = None
    for r in results:
        merged = r if merged is None else merged.merge(r)
    return merged


def fixed_entries(model: nn.Module) -> dict[str, torch.Tensor]:
    """Structurally fixed entries of ``model``'s parameters: qualified name -> bool mask
    (True = fixed), collected from every submodule's ``fixed_entry_masks()``."""
    out: dict[str, torch.Tensor] = {}
    for prefix, mod in model.named_modules():
        fn = getattr(mod, "fixed_entry_masks", None)
        if not callable(fn):
            continue
        for name, mask in fn().items():
            out[f"{prefix}.{name}" if prefix else name] = mask
    return out


def count_fixed(model: nn.Module) -> int:
    """How many parameter entries of ``model`` are fixed (not parameters; see the module docstring)."""
    return sum(int(m.sum()) for m in fixed_entries(model).values())


def _own_mask(ch: Any, device: torch.device) -> torch.Tensor:
    """New entries that belong to new units: new entries in rows (dim 0) that are new."""
    new = ch.new_mask(device)
    if new.dim() == 0:
        return new
    rows = torch.ones(ch.new_shape[0], dtype=torch.bool, device=device)
    rows[ch.dst[0].to(device)] = False
    return new & rows.view(-1, *([1] * (new.dim() - 1)))


class FreezePolicy:
    """Which parameters (and which entries of them) train; see the module docstring.

    Attributes:
        policy: ``all``, ``new_only`` or ``new_units``.
        masks: for partially trainable parameters, name -> bool mask ``(*param.shape)``,
            True where an entry trains (new, and not fixed).
    """

    def __init__(self, model: nn.Module, policy: str, masks: dict[str, torch.Tensor], trainable: Collection[str]) -> None:
        self.model = model
        self.policy = policy
        self.masks = masks
        self._trainable = set(trainable)
        self._saved: dict[str, torch.Tensor] = {}
        self._apply()

    # ---- construction --------------------------------------------------------------
    @classmethod
    def build(
        cls,
        model: nn.Module,
        results: Sequence[SurgeryResult],
        policy: str,
        *,
        extra_trainable: Collection[str] = (),
    ) -> FreezePolicy:
        """Set ``requires_grad`` on ``model``'s parameters for ``policy`` and return the policy.

        Args:
            model: the grown module; the results' names are relative to it.
            results: this epoch's surgery results, in the order applied.
            policy: ``all``, ``new_only`` or ``new_units``.
            extra_trainable: name prefixes (e.g. ``head``) that train fully under
                ``new_only``/``new_units`` (the paper trains the new neurons plus projector and head).

        Raises:
            ConfigError: unknown policy.
            ScheduleError: ``new_only``/``new_units`` but nothing is new (e.g. an epoch with only shrinks).
            KeyError: a result names a tensor the model does not have (a wrong prefix).
        """
        if policy not in FREEZE_POLICIES:
            raise ConfigError(f"unknown freeze policy {policy!r}; valid policies: {', '.join(FREEZE_POLICIES)}")
        params = dict(model.named_parameters())
        if policy == "all":
            return cls(model, "all", {}, [n for n, p in params.items() if p.requires_grad or hasattr(p, _FROZEN_FLAG)])
        buffers = {n for n, _ in model.named_buffers()}
        merged = merge_results(results)
        trainable: set[str] = set()
        masks: dict[str, torch.Tensor] = {}
        if merged is not None:
            for name in merged.added:
                if name in params:
                    trainable.add(name)
                elif name not in buffers:
                    raise KeyError(f"surgery result names {name!r}, which the model has no parameter or buffer of (wrong prefix?)")
            for name, ch in merged.changed.items():
                if name not in params:
                    if name not in buffers:
                        raise KeyError(f"surgery result names {name!r}, which the model has no parameter or buffer of (wrong prefix?)")
                    continue
                p = params[name]
                if tuple(p.shape) != tuple(ch.new_shape):
                    raise KeyError(f"surgery result says {name!r} has shape {tuple(ch.new_shape)}, the model has {tuple(p.shape)}")
                mask = ch.new_mask(p.device) if policy == "new_only" else _own_mask(ch, p.device)
                if bool(mask.all()):
                    trainable.add(name)
                elif bool(mask.any()):
                    trainable.add(name)
                    masks[name] = mask
        prefixes = tuple(p if p.endswith(".") else p + "." for p in extra_trainable)
        for name in params:
            if name in extra_trainable or name.startswith(prefixes):
                trainable.add(name)
                masks.pop(name, None)
        if not trainable:
            events = "" if merged is None else f" (last event: {merged.action} at {merged.point!r})"
            what = "parameters" if policy == "new_only" else "units with parameters of their own"
            raise ScheduleError(f"freeze {policy!r} but this epoch's events add no new {what}{events}; use freeze 'all'")
        return cls(model, policy, masks, trainable)

    def _apply(self) -> None:
        params = dict(self.model.named_parameters())
        for name, fixed in fixed_entries(self.model).items():  # fixed entries never train
            if name in self._trainable and name in params:
                fixed = fixed.to(params[name].device)
                base = self.masks.get(name)
                self.masks[name] = (~fixed) if base is None else (base.to(fixed.device) & ~fixed)
        for name, p in self.model.named_parameters():
            if name in self._trainable:
                p.requires_grad_(True)
                if hasattr(p, _FROZEN_FLAG):
                    delattr(p, _FROZEN_FLAG)
            elif p.requires_grad:
                p.requires_grad_(False)
                setattr(p, _FROZEN_FLAG, True)
        self._saved = {n: params[n].detach()[~m].clone() for n, m in self.masks.items()}

    # ---- use -----------------------------------------------------------------------
    def _masked(self) -> list[tuple[str, nn.Parameter, torch.Tensor, torch.Tensor]]:
        """(name, parameter, mask, saved old entries), following the model to a new device."""
        params = dict(self.model.named_parameters())
        out = []
        for name, mask in self.masks.items():
            p = params[name]
            if mask.device != p.device:
                self.masks[name] = mask = mask.to(p.device)
                self._saved[name] = self._saved[name].to(p.device)
            out.append((name, p, mask, self._saved[name]))
        return out

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The ``(name, parameter)`` pairs to give the optimizer, in model order."""
        return [(n, p) for n, p in self.model.named_parameters() if n in self._trainable and p.requires_grad]

    def trainable_entries(self) -> int:
        """Parameter entries that train (frozen old entries and fixed entries excluded)."""
        n = 0
        for name, p in self.trainable_named_parameters():
            m = self.masks.get(name)
            n += p.numel() if m is None else int(m.sum())
        return n

    def before_step(self) -> None:
        """Zero the gradients of old entries inside partially trainable parameters."""
        if not self.masks:
            return
        with torch.no_grad():
            for _name, p, mask, _ in self._masked():
                if p.grad is not None:
                    p.grad.mul_(mask.to(p.grad.dtype))

    def after_step(self) -> None:
        """Write the saved old entries back, bit for bit (undoes weight decay and momentum)."""
        if not self.masks:
            return
        with torch.no_grad():
            for _, p, mask, saved in self._masked():
                p.data[~mask] = saved

    # ---- resume --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and primitives only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "policy": self.policy,
            "trainable": sorted(self._trainable),
            "masks": {n: m.cpu() for n, m in self.masks.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Re-apply a saved policy to :attr:`model` (whose weights were restored first).

        The old entries are re-saved from the model's current values, which are the frozen
        ones because they never changed.

        Raises:
            ConfigError: the state does not fit the model (unknown policy, names or shapes).
        """
        policy = state.get("policy")
        if policy not in FREEZE_POLICIES:
            raise ConfigError(f"freeze state: unknown policy {policy!r}; valid policies: {', '.join(FREEZE_POLICIES)}")
        params = dict(self.model.named_parameters())
        missing = [n for n in state.get("trainable", []) if n not in params]
        if missing:
            raise ConfigError(f"freeze state names parameters the model lacks: {', '.join(missing[:5])}")
        masks = {}
        for n, m in dict(state.get("masks", {})).items():
            if n not in params or tuple(params[n].shape) != tuple(m.shape):
                raise ConfigError(f"freeze state: mask for {n!r} does not fit the model")
            masks[n] = m.to(device=params[n].device, dtype=torch.bool)
        self.policy, self.masks, self._trainable = policy, masks, set(state.get("trainable", []))
        self._apply()

    @classmethod
    def from_state_dict(cls, model: nn.Module, state: dict[str, Any]) -> FreezePolicy:
        """Rebuild a policy for ``model`` from :meth:`state_dict`."""
        pol = cls(model, "all", {}, [n for n, p in model.named_parameters() if p.requires_grad or hasattr(p, _FROZEN_FLAG)])
        pol.load_state_dict(state)
        return pol

    def __repr__(self) -> str:
        return f"FreezePolicy({self.policy!r}, trainable_tensors={len(self._trainable)}, trainable_entries={self.trainable_entries()})"
