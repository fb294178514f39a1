"""``growsearch data``: generate the synthetic corpus, check a corpus.

``growsearch data synth --out DIR [--seed N] [--size small]`` writes the generated
corpus in the ASVspoof 2019 LA layout. ``growsearch data check CONFIG_OR_ROOT`` loads a
corpus exactly as training would and prints its counts (JSON on stdout).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import click

from growsearch.data.config import DATASETS, DataConfig
from growsearch.data.synthetic import DISCLAIMER, SIZES
from growsearch.errors import ConfigError, DataError
from growsearch.yamlio import load_yaml, parse_model


@click.group(name="data")
def command() -> None:
    """Datasets: generate the synthetic corpus, check a corpus."""


@command.command(name="synth", help=(
    "Write the generated corpus (ASVspoof 2019 LA layout: FLAC 16 kHz + CM protocols) into OUT. "
    f"{DISCLAIMER} Sizes (train/dev/eval utterances): "
    + ", ".join(f"{k} {a}/{b}/{c}" for k, (a, b, c) in SIZES.items()) + "."
))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to create (plays the role of LA/).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed (0..2**32-1); the same seed gives identical files.")
@click.option("--size", default="small", show_default=True, type=click.Choice(list(SIZES)), help="Corpus size.")
def synth(out: Path, seed: int, size: str) -> None:
    from growsearch.bounds import check_seed
    from growsearch.data.synthetic import ensure_corpus, read_marker

    check_seed(seed, "--seed")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise DataError(f"--out {out}: cannot create it ({probe} is not a writable folder)")
    made = ensure_corpus(out, seed=seed, size=size)
    if not made:
        click.echo(f"{out}: the corpus of seed {seed}, size {size} is already there", err=True)
    marker = read_marker(out) or {}
    click.echo(json.dumps({"root": str(out), "seed": seed, "size": size, "generated": made,
                           "counts": marker.get("counts", {})}, sort_keys=True))


@command.command(name="check")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Choice(list(DATASETS)), default=None,
              help="When TARGET is a folder: its dataset (default: asvspoof2019_la, or synthetic if it holds SYNTHETIC.json).")
@click.option("--variant", default=None, help="FakeOrReal variant when TARGET is a folder.")
@click.option("--no-cache", "--read-all", "no_cache", is_flag=True,
              help="Decode every file again instead of reusing the cached verdicts of unchanged files.")
def check(target: Path, dataset: str | None, variant: str | None, no_cache: bool) -> None:
    """Validate a corpus and print counts per split, class and attack (JSON on stdout).

    TARGET is a YAML file (a data config, or a study/training config with a `data:` key)
    or a corpus folder. Every listed file of every split is decoded (in parallel; the
    verdict of an unchanged file is cached, see README "Data"). Exit 0 when the corpus
    loads; 2 with one clear line if not (under `on_bad_file: error`, after listing every
    unusable file in the JSON's `unreadable`).
    """
    cfg = _config(target, dataset, variant)  # a bad target is reported before torch loads
    from growsearch.data.splits import build_splits

    logging.basicConfig(level=logging.INFO, format="growsearch: %(message)s")
    logging.getLogger("growsearch.data.splits").setLevel(logging.ERROR)  # bad files are listed in the JSON
    splits = build_splits(cfg.model_copy(update={"on_bad_file": "skip"}), seed=0, use_cache=not no_cache)
    summary: dict[str, Any] = splits.summary()
    bad = [{"split": name, "path": p, "reason": r} for name, ds in splits for p, r in ds.skipped]
    summary["unreadable"] = bad
    click.echo(json.dumps(summary, indent=2))
    if bad and cfg.on_bad_file == "error":
        raise DataError(f"{len(bad)} file(s) cannot be used (listed in 'unreadable'); first: {bad[0]['reason']}")
    if bad:
        click.echo(f"growsearch: {len(bad)} file(s) cannot be used and will be skipped (on_bad_file: skip); "
                   "listed in 'unreadable'", err=True)


def _config(target: Path, dataset: str | None, variant: str | None) -> DataConfig:
    if target.is_dir():
        if dataset is None:
            dataset = "synthetic" if (target / "SYNTHETIC.json").is_file() else "asvspoof2019_la"
        data: dict[str, Any] = {"dataset": dataset, "root": str(target)}
        if variant is not None:
            data["variant"] = variant
        if dataset == "synthetic":
            from growsearch.data.synthetic import read_marker

            marker = read_marker(target) or {}
            data.update({k: v for k, v in (("synth_seed", marker.get("seed")), ("synth_size", marker.get("size"))) if v is not None})
        return parse_model(DataConfig, data, str(target))
    if target.suffix.lower() in (".yaml", ".yml") or target.is_file():
        raw = load_yaml(target, what="config")
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
            return parse_model(DataConfig, raw["data"], f"{target}: data")
        return parse_model(DataConfig, raw, str(target))
    raise ConfigError(f"{target}: not found (expected a corpus folder or a YAML config)")
