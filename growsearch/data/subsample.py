"""Stratified, deterministic subsets for quick runs.

``max_per_attack`` keeps at most N items of every attack (bona fide is one group);
``max_per_class`` then keeps at most N bona fide and N spoof items, taking spoof items
round-robin across attacks so every attack stays represented. The draw depends only on
the items, the caps, the split name and ``seed``; the kept items stay in their original
order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from growsearch.data.dataset import Item


def _rng(seed: int, split: str, what: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), zlib.crc32(what.encode())])


def _groups(idx: list[int], items: list[Item], key: Callable[[Item], str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in idx:
        out.setdefault(key(items[i]), []).append(i)
    return dict(sorted(out.items()))


def subsample(items: list[Item], *, split: str, seed: int, max_per_class: int | None = None,
              max_per_attack: int | None = None) -> list[Item]:
    """Keep a stratified subset of ``items``.

    Args:
        items: the full list, in protocol order.
        split: split name (part of the draw, so splits draw independently).
        seed: the subset seed.
        max_per_class: at most this many bona fide and this many spoof items.
        max_per_attack: at most this many items per attack.

    Returns:
        The kept items in their original order.
    """
    idx = list(range(len(items)))
    if max_per_attack is not None:
        rng = _rng(seed, split, "attack")
        keep: list[int] = []
        for _, members in _groups(idx, items, lambda it: it.attack).items():
            perm = rng.permutation(len(members))
            keep.extend(members[j] for j in perm[:max_per_attack])
        idx = sorted(keep)
    if max_per_class is not None:
        rng = _rng(seed, split, "class")
        keep = []
        for _, members in _groups(idx, items, lambda it: it.key).items():
            by_attack = _groups(members, items, lambda it: it.attack)
            queues = [[m[j] for j in rng.permutation(len(m))] for m in by_attack.values()]
            picked: list[int] = []
            pos = 0
            while len(picked) < max_per_class and any(pos < len(q) for q in queues):
                for q in queues:
                    if pos < len(q) and len(picked) < max_per_class:
                        picked.append(q[pos])
                pos += 1
            keep.extend(picked)
        idx = sorted(keep)
    return [items[i] for i in idx]
