"""Properties of the length fixing and the subsampling, over many generated inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from growsearch.data.audio import fix_length
from growsearch.data.dataset import Item
from growsearch.data.subsample import subsample


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), length=st.integers(1, 300), seed=st.integers(0, 2**32 - 1), train=st.booleans())
def test_fix_length(n: int, length: int, seed: int, train: bool) -> None:
    w = np.arange(1, n + 1, dtype=np.float32)  # no zeros, so zero-padding would show
    out = fix_length(w, length, np.random.default_rng(seed) if train else None)
    assert out.shape == (length,) and np.all(out != 0)
    if n >= length:
        start = int(out[0]) - 1
        np.testing.assert_array_equal(out, w[start : start + length])
        assert start == 0 or train
    else:
        np.testing.assert_array_equal(out, w[np.arange(length) % n])  # tiled from the start


attacks = st.lists(st.sampled_from(["bonafide", "A01", "A02", "A03"]), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(att=attacks, cap_class=st.one_of(st.none(), st.integers(1, 20)),
       cap_attack=st.one_of(st.none(), st.integers(1, 20)), seed=st.integers(0, 1000))
def test_subsample(att: list[str], cap_class: int | None, cap_attack: int | None, seed: int) -> None:
    items = [Item(utt=f"u{i}", speaker="s", attack=a, env="-", key="bonafide" if a == "bonafide" else "spoof",
                  path=Path(f"u{i}.flac")) for i, a in enumerate(att)]
    kept = subsample(items, split="train", seed=seed, max_per_class=cap_class, max_per_attack=cap_attack)
    assert kept == subsample(items, split="train", seed=seed, max_per_class=cap_class, max_per_attack=cap_attack)
    idx = [items.index(k) for k in kept]
    assert idx == sorted(set(idx))  # a subset, original order
    per_attack = {a: att.count(a) for a in set(att)}
    after_attack = {a: min(c, cap_attack) if cap_attack else c for a, c in per_attack.items()}
    for key in ("bonafide", "spoof"):
        have = sum(c for a, c in after_attack.items() if (a == "bonafide") == (key == "bonafide"))
        got = sum(1 for k in kept if k.key == key)
        assert got == (min(have, cap_class) if cap_class else have)  # caps exact, never fewer than possible
    if cap_class:  # round-robin: spoof attack counts differ by at most one unless an attack runs out
        got = {a: sum(1 for k in kept if k.attack == a) for a in after_attack if a != "bonafide"}
        if got:
            full = [a for a in got if got[a] < after_attack[a]]
            assert all(got[a] >= max(got.values()) - 1 for a in full)
