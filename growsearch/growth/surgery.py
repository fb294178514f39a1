"""What one growth or shrink did to a model's tensors.

Every growth operation returns a :class:`SurgeryResult`. The optimizer rebuild
(``carry`` moments), the ``new_only`` freeze policy and checkpoints use it; nothing
else needs to know how a particular layer was widened.

Index convention: for a parameter whose shape changed, :class:`TensorChange` gives per
dimension two LongTensors ``src`` and ``dst`` of equal length, such that the entries that
survive are ``new[ix(dst)] <- old[ix(src)]`` (``ix`` = open mesh over the dims). Entries of
``new`` not covered by ``dst`` are *new* entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TensorChange:
    """How the entries of one tensor map from its old to its new shape."""

    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]
    src: tuple[torch.Tensor, ...]
    dst: tuple[torch.Tensor, ...]

    @staticmethod
    def appended(old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> TensorChange:
        """Old entries keep their indices (the top-left block); new ones are appended."""
        src = tuple(torch.arange(o) for o in old_shape)
        return TensorChange(tuple(old_shape), tuple(new_shape), src, src)

    @staticmethod
    def kept(old_shape: tuple[int, ...], keep: dict[int, torch.Tensor]) -> TensorChange:
        """A shrink: along each dim in ``keep`` only those old indices survive, in order."""
        src, dst, new_shape = [], [], []
        for d, n in enumerate(old_shape):
            if d in keep:
                k = keep[d].to(torch.long)
                src.append(k)
                dst.append(torch.arange(len(k)))
                new_shape.append(len(k))
            else:
                src.append(torch.arange(n))
                dst.append(torch.arange(n))
                new_shape.append(n)
        return TensorChange(tuple(old_shape), tuple(new_shape), tuple(src), tuple(dst))

    def carry(self, old: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """A tensor of the new shape holding ``old``'s surviving entries, ``fill`` elsewhere."""
        out = torch.full(self.new_shape, fill, dtype=old.dtype, device=old.device)
        if old.dim() == 0:
            return old.clone()
        out[torch.meshgrid(*[d.to(old.device) for d in self.dst], indexing="ij")] = old[
            torch.meshgrid(*[s.to(old.device) for s in self.src], indexing="ij")
        ]
        return out

    def new_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Bool mask of the new shape: True where an entry is new (not carried over)."""
        mask = torch.ones(self.new_shape, dtype=torch.bool, device=device)
        if len(self.new_shape) == 0:
            return torch.zeros((), dtype=torch.bool, device=device)
        mask[torch.meshgrid(*[d.to(device) for d in self.dst], indexing="ij")] = False
        return mask


@dataclass
class SurgeryResult:
    """The effect of one growth operation on a model's parameters and buffers.

    Attributes:
        point: the growth point operated on.
        action: ``grow`` or ``shrink``.
        neurons: units added or removed.
        changed: qualified names (relative to the model passed to the operation) of
            parameters/buffers whose shape changed, with their index maps. A tensor whose
            shape stayed but whose values changed (a net2net split) is listed with an
            identity map.
        added: qualified names of wholly new parameters/buffers (a parallel branch).
        removed: qualified names of parameters/buffers that no longer exist.
    """

    point: str
    action: str
    neurons: int
    changed: dict[str, TensorChange] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

    def prefixed(self, prefix: str) -> SurgeryResult:
        """The same result with every name prefixed (``backbone.`` + name)."""
        p = prefix if not prefix or prefix.endswith(".") else prefix + "."
        return SurgeryResult(
            self.point,
            self.action,
            self.neurons,
            {p + k: v for k, v in self.changed.items()},
            {p + k for k in self.added},
            {p + k for k in self.removed},
        )

    def merge(self, other: SurgeryResult) -> SurgeryResult:
        """Compose two results applied one after another (used when several events of one
        epoch touch the same tensor); masks of new entries combine."""
        changed = dict(self.changed)
        for name, ch in other.changed.items():
            if name in changed:
                first = changed[name]
                # compose: entries surviving both maps
                changed[name] = _compose(first, ch)
            else:
                changed[name] = ch
        added = (self.added | other.added) - other.removed
        removed = (self.removed | other.removed) - other.added
        for name in other.removed:
            changed.pop(name, None)
        return SurgeryResult(other.point, other.action, other.neurons, changed, added, removed)


def _compose(a: TensorChange, b: TensorChange) -> TensorChange:
    src, dst = [], []
    for sa, da, sb, db in zip(a.src, a.dst, b.src, b.dst):
        # an old index i survives a at position da[j] where sa[j] == i; then b maps sb->db
        pos_after_a = {int(d): int(s) for s, d in zip(sa, da)}
        s_out, d_out = [], []
        for s2, d2 in zip(sb.tolist(), db.tolist()):
            if s2 in pos_after_a:
                s_out.append(pos_after_a[s2])
                d_out.append(d2)
        src.append(torch.tensor(s_out, dtype=torch.long))
        dst.append(torch.tensor(d_out, dtype=torch.long))
    return TensorChange(a.old_shape, b.new_shape, tuple(src), tuple(dst))
