"""The paper presets' parameter counts beside the authors' models (``docs/PAPER_PRESETS.md``).

For every full preset under ``presets/`` (not the tiny ones) and every variant, it runs
``growsearch train --dry-run``'s machinery (:func:`growsearch.train.dryrun.dry_run`, parameters
only) and lists per phase the total parameters and the trainable entries, beside the numbers
of the authors' own model classes (instantiated as their drivers do; see the issue that compared
them). Prints the Markdown table (and with ``--json`` a JSON document); ``--write-docs`` puts the
table into ``docs/PAPER_PRESETS.md`` between its markers, and ``tests/test_preset_counts.py``
fails when the two differ. Usage::

    .venv/bin/python bench/paper_presets.py --counts              # print the table
    .venv/bin/python bench/paper_presets.py --counts --write-docs # refresh docs/PAPER_PRESETS.md
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "presets"
DOC = ROOT / "docs" / "PAPER_PRESETS.md"
START = "<!-- preset-counts:start (bench/paper_presets.py --counts --write-docs) -->"
END = "<!-- preset-counts:end -->"
ORDER = ("baseline", "dropin_frozen", "dropin_unfrozen", "dropin", "lora", "plasticity")
NAMES = {"resnet18": "ResNet18", "lcgrnn": "LC-GRNN", "wav2vec2_base": "wav2vec2-base", "wav2vec2_small": "wav2vec2-small"}

ALL = "all"
RN, RN_GROWN = 11_171_266, 14_286_530
GR, GR_GROWN = 57_282, 100_866
WB, WB_GROWN = 94_569_090, 102_837_378
WS, WS_GROWN = 11_249_794, 16_630_914
#: the authors' (total, trainable) per phase of each variant; None: not in the comparison
AUTHORS: dict[tuple[str, str], list[tuple[int, int | str] | None]] = {
    ("resnet18", "baseline"): [(RN, ALL)],
    ("resnet18", "dropin_frozen"): [(RN, ALL), (RN_GROWN, 1_476_864)],
    ("resnet18", "dropin_unfrozen"): [(RN, ALL), (RN_GROWN, ALL)],
    ("resnet18", "plasticity"): [(RN, ALL), (RN_GROWN, ALL), (RN, ALL)],
    ("lcgrnn", "baseline"): [(GR, ALL)],
    ("lcgrnn", "dropin_frozen"): [(GR, ALL), (GR_GROWN, 37_506)],  # the frozen count is a reading (note b)
    ("lcgrnn", "dropin_unfrozen"): [(GR, ALL), (GR_GROWN, ALL)],
    ("lcgrnn", "plasticity"): [(GR, ALL), (GR_GROWN, ALL), (GR, ALL)],
    ("wav2vec2_base", "baseline"): [(WB, ALL)],
    ("wav2vec2_base", "dropin_frozen"): [(WB_GROWN, 8_465_666)],
    ("wav2vec2_base", "lora"): [None],
    ("wav2vec2_small", "baseline"): [(WS, ALL)],
    ("wav2vec2_small", "dropin"): [(WS, ALL), (WS_GROWN, ALL)],
    ("wav2vec2_small", "plasticity"): [(WS, ALL), (WS_GROWN, ALL), (WS, ALL)],
}
#: documented differences: (family, variant, phase index) -> note label (see docs/PAPER_PRESETS.md)
NOTES: dict[tuple[str, str, int], str] = {
    ("lcgrnn", "dropin_frozen", 1): "a, b",
    ("lcgrnn", "dropin_unfrozen", 1): "a",
    ("lcgrnn", "plasticity", 1): "a",
    ("wav2vec2_base", "lora", 0): "c",
}


def variants(folder: Path) -> list[Path]:
    files = [p for p in folder.glob("*.yaml") if p.name not in ("config.yaml", "study.yaml", "space.yaml")]
    return sorted(files, key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))


def count_rows() -> list[dict[str, Any]]:
    """One row per (family, variant, phase): growsearch's counts and the authors'."""
    from growsearch.backbones import create_backbone
    from growsearch.schedule import GrowthSchedule
    from growsearch.train.config import load_train_config
    from growsearch.train.dryrun import dry_run

    rows: list[dict[str, Any]] = []
    for fam in NAMES:
        cfg = load_train_config(PRESETS / fam / "config.yaml")
        options = {k: v for k, v in dict(cfg.model.options).items() if k != "pretrained"}
        fresh = create_backbone(cfg.model.backbone, cfg.model.preset, **options)  # built once, copied per variant
        for sched_file in variants(PRESETS / fam):
            rep = dry_run(cfg, GrowthSchedule.load(sched_file), flops=False, model=copy.deepcopy(fresh),
                          schedule_source=str(sched_file))
            authors = AUTHORS.get((fam, sched_file.stem), [None] * len(rep["phases"]))
            for i, ph in enumerate(rep["phases"]):
                a = authors[i] if i < len(authors) else None
                rows.append({
                    "family": fam, "variant": sched_file.stem, "epochs": f"{ph['start_epoch']}-{ph['end_epoch']}",
                    "freeze": ph["freeze"], "params": ph["params"], "trainable": ph["trainable_params"],
                    "authors_params": None if a is None else a[0], "authors_trainable": None if a is None else a[1],
                    "note": NOTES.get((fam, sched_file.stem, i), ""),
                })
    return rows


def _n(x: int | str | None, total: int | None = None) -> str:
    if x is None:
        return "—"
    if x == ALL:
        return "all"
    s = f"{int(x):,}"
    return f"{s} (all)" if total is not None and x == total else s


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | variant | epochs | freeze | authors' total | growsearch total | authors' trainable "
             "| growsearch trainable | note |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        same = r["authors_params"] == r["params"] and (
            r["authors_trainable"] == r["trainable"] or (r["authors_trainable"] == ALL and r["trainable"] == r["params"]))
        note = r["note"] or ("=" if same else "")
        lines.append(f"| {NAMES[r['family']]} | {r['variant']} | {r['epochs']} | {r['freeze']} | {_n(r['authors_params'])} "
                     f"| {_n(r['params'])} | {_n(r['authors_trainable'])} | {_n(r['trainable'], r['params'])} | {note} |")
    return "\n".join(lines) + "\n"


def docs_block(table: str) -> str:
    return f"{START}\n{table}{END}"


def current_docs_table(doc: Path = DOC) -> str | None:
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return None
    return text[text.index(START) + len(START) + 1: text.index(END)]


def write_docs(table: str, doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{doc}: the markers {START!r} and {END!r} are missing")
    text = text[: text.index(START)] + docs_block(table) + text[text.index(END) + len(END):]
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of the Markdown table")
    ap.add_argument("--write-docs", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    rows = count_rows()
    table = markdown(rows)
    print(json.dumps({"benchmark": "preset_counts", "rows": rows}, indent=2) if args.json else table, end="" if not args.json else "\n")
    if args.write_docs:
        write_docs(table)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
