"""``build_splits(cfg, seed)``: a :class:`DataConfig` -> train/dev/eval datasets.

Every listed file is checked up front (exists, readable header, not empty, 1 or 2
channels, a usable sample rate), so a bad corpus fails before training starts. Under
``on_bad_file: skip`` such files are left out, logged as a warning and listed in each
dataset's ``.skipped``. A file whose header is fine but whose data is corrupt raises a
:class:`~growsearch.errors.DataError` naming it when it is first read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from growsearch.data import asvspoof2019, fakeorreal
from growsearch.data.audio import check_audio
from growsearch.data.config import SPLITS, DataConfig
from growsearch.data.dataset import AsvFiles, ClipDataset, Item, Splits
from growsearch.data.subsample import subsample
from growsearch.errors import DataError

log = logging.getLogger(__name__)

_SCENARIO = {"asvspoof2019_la": "LA", "asvspoof2019_pa": "PA", "synthetic": "LA"}


def list_items(cfg: DataConfig, root: Path, split: str) -> list[Item]:
    """All items of ``split`` as the corpus lists them (no subsampling, no file checks)."""
    if cfg.dataset == "fakeorreal":
        return fakeorreal.list_split(root, cfg.for_variant, split)
    return asvspoof2019.list_split(root, _SCENARIO[cfg.dataset], split)


def validate_items(items: list[Item], *, on_bad_file: str) -> tuple[list[Item], list[tuple[str, str]]]:
    """Check every item's audio header; return the good items and the skipped ones.

    Raises:
        DataError: a bad file under ``on_bad_file: error``; names the file and where it
            was listed.
    """
    good: list[Item] = []
    skipped: list[tuple[str, str]] = []
    for it in items:
        try:
            check_audio(it.path)
        except DataError as exc:
            msg = str(exc)
            if it.source and on_bad_file == "error":
                msg = f"{msg} (listed at {it.source})"
            if on_bad_file == "error":
                raise DataError(msg) from None
            skipped.append((str(it.path), msg))
            continue
        good.append(it)
    return good, skipped


def resolve_root(cfg: DataConfig) -> Path:
    """The corpus root; for ``synthetic`` the corpus is generated there if missing."""
    root = cfg.resolved_root()
    if cfg.dataset == "synthetic":
        from growsearch.data.synthetic import ensure_corpus

        ensure_corpus(root, seed=cfg.synth_seed, size=cfg.synth_size)
    return root


def build_splits(cfg: DataConfig, seed: int) -> Splits:
    """Build the train, dev and eval datasets of ``cfg``.

    Args:
        cfg: the data config.
        seed: training seed (drives the random training crops with the epoch and index;
            the subset is drawn from ``cfg.subset_seed``).

    Returns:
        :class:`Splits` with ``.train``, ``.dev``, ``.eval`` (:class:`ClipDataset`) and,
        for ASVspoof, ``.asv`` (ASV protocol/score files for t-DCF, if present).

    Raises:
        DataError: missing root (names the environment variable), protocol, bad protocol
            line (``file:line``), missing or unusable audio file, or a split that ends up
            empty.
    """
    root = resolve_root(cfg)
    datasets: dict[str, ClipDataset] = {}
    for split in SPLITS:
        items = list_items(cfg, root, split)
        items = subsample(
            items, split=split, seed=cfg.subset_seed,
            max_per_class=cfg.max_per_class.get(split) if cfg.max_per_class else None,
            max_per_attack=cfg.max_per_attack.get(split) if cfg.max_per_attack else None,
        )
        items, skipped = validate_items(items, on_bad_file=cfg.on_bad_file)
        for path, reason in skipped:
            log.warning("skipping bad file (%s split): %s", split, reason)
        if skipped:
            log.warning("%s split: skipped %d bad file(s) (on_bad_file: skip)", split, len(skipped))
        if not items:
            raise DataError(f"{root}: the {split} split of {cfg.dataset} has no usable utterances")
        datasets[split] = ClipDataset(items, split=split, clip_samples=cfg.clip_samples, seed=seed, skipped=skipped)
    asv: dict[str, AsvFiles] = {}
    if cfg.dataset in ("asvspoof2019_la", "asvspoof2019_pa"):
        asv = asvspoof2019.find_asv_files(root, _SCENARIO[cfg.dataset])
    return Splits(train=datasets["train"], dev=datasets["dev"], eval=datasets["eval"],
                  dataset=cfg.dataset, root=root, asv=asv)
