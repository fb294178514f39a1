"""The paper presets reproduce the authors' models parameter for parameter, and the table in
``docs/PAPER_PRESETS.md`` is what ``bench/paper_presets.py --counts`` prints (it cannot drift).

Every preset variant's total and trainable counts per phase equal the authors' numbers, except
the documented LC-GRNN bias layout (notes a, b: exactly 192 fewer) and LoRA (note c: not in the
authors' comparison; checked against its formula).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def counts() -> Any:
    spec = importlib.util.spec_from_file_location("preset_counts", ROOT / "bench" / "preset_counts.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["preset_counts"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rows(counts: Any) -> list[dict[str, Any]]:
    return counts.count_rows()


def test_every_variant_matches_the_authors_or_the_documented_arithmetic(rows: list[dict[str, Any]]) -> None:
    seen = {(r["family"], r["variant"]) for r in rows}
    assert len(seen) == 14  # 4 + 4 + 3 + 3 published variants
    for r in rows:
        a_total, a_train = r["authors_params"], r["authors_trainable"]
        where = f"{r['family']}/{r['variant']} epochs {r['epochs']}"
        if r["note"] == "c":  # LoRA: 12 layers x (q, v) x rank 8 x (768 + 768), + the MLP head 197,378
            assert a_total is None and r["params"] == 94_569_090 + 294_912 and r["trainable"] == 294_912 + 197_378
            continue
        bias_layout = 192 if "a" in r["note"] else 0  # fused GRU: 2 biases per gate row, the authors' 3 Linears: 3
        assert r["params"] == a_total - bias_layout, where
        if a_train == "all":
            assert r["trainable"] == r["params"], where
        else:
            assert r["trainable"] == a_train - bias_layout, where


def test_frozen_regimes_train_what_the_authors_train(rows: list[dict[str, Any]]) -> None:
    frozen = {(r["family"], r["variant"]): r["trainable"] for r in rows if r["freeze"] != "all"}
    assert frozen[("resnet18", "dropin_frozen")] == 1_476_864  # the two parallel branches only
    assert frozen[("lcgrnn", "dropin_frozen")] == 37_314  # new units' rows (12,288 + 24,576 + 384) + head 66
    assert frozen[("wav2vec2_base", "dropin_frozen")] == 8_465_666  # layer + projection + MLP head


def test_docs_table_is_the_scripts_output(counts: Any, rows: list[dict[str, Any]]) -> None:
    table = counts.markdown(rows)
    assert counts.current_docs_table() == table, (
        "docs/PAPER_PRESETS.md's parameter table is out of date: run "
        "`python bench/paper_presets.py --counts --write-docs`")
