"""``build_splits(cfg, seed)``: a :class:`DataConfig` -> train/dev/eval datasets.

Every protocol of the three splits is read first, then every listed file of every split is
decoded (:mod:`growsearch.data.decode_check`: in parallel, verdicts cached per file; with
``feature_cache`` on, the verdicts of the whole corpus state are recorded in the feature
cache folder, so every later trial on any node skips the check), so a
bad corpus (missing, empty, garbage, truncated or unusable audio, in any split) fails before
anything trains. Under ``on_bad_file: skip`` such files are left out, logged as a warning
and listed in each dataset's ``.skipped``. Every reason names the file and the protocol
line that lists it (``(listed at protocol:line)``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from growsearch.data import asvspoof2019, fakeorreal
from growsearch.data.config import SPLITS, DataConfig
from growsearch.data.dataset import AsvFiles, ClipDataset, Item, Splits, listed_at
from growsearch.data.decode_check import decode_verdicts
from growsearch.data.subsample import subsample
from growsearch.errors import DataError

log = logging.getLogger(__name__)

_SCENARIO = {"asvspoof2019_la": "LA", "asvspoof2019_pa": "PA", "synthetic": "LA"}


def list_items(cfg: DataConfig, root: Path, split: str) -> list[Item]:
    """All items of ``split`` as the corpus lists them (no subsampling, no file checks)."""
    if cfg.dataset == "fakeorreal":
        return fakeorreal.list_split(root, cfg.for_variant, split)
    return asvspoof2019.list_split(root, _SCENARIO[cfg.dataset], split)


def validate_items(items: list[Item], verdicts: dict[Path, str | None], *,
                   on_bad_file: str) -> tuple[list[Item], list[tuple[str, str]]]:
    """Split ``items`` by their decode verdicts into the good ones and the skipped ones.

    Args:
        items: the items of one split.
        verdicts: ``{path: None or reason}`` from
            :func:`~growsearch.data.decode_check.decode_verdicts`.
        on_bad_file: ``error`` or ``skip``.

    Returns:
        The usable items and ``(path, reason)`` of each bad one (the reason names the file
        and the protocol line that lists it).

    Raises:
        DataError: a bad file under ``on_bad_file: error``; the first in listing order,
            naming the file and where it was listed (and how many more are bad).
    """
    good: list[Item] = []
    skipped: list[tuple[str, str]] = []
    for it in items:
        reason = verdicts.get(it.path)
        if reason is None:
            good.append(it)
        else:
            skipped.append((str(it.path), listed_at(reason, it)))
    if skipped and on_bad_file == "error":
        more = f" (and {len(skipped) - 1} more bad file(s) in this split; `growsearch data check` lists them)" if len(skipped) > 1 else ""
        raise DataError(skipped[0][1] + more)
    return good, skipped


def resolve_root(cfg: DataConfig) -> Path:
    """The corpus root; for ``synthetic`` the corpus is generated there if missing."""
    root = cfg.resolved_root()
    if cfg.dataset == "synthetic":
        from growsearch.data.synthetic import ensure_corpus

        ensure_corpus(root, seed=cfg.synth_seed, size=cfg.synth_size)
    return root


def _decode_once(cfg: DataConfig, paths: list[Path], root: Path, use_cache: bool) -> dict[Path, str | None]:
    """The decode verdicts: recorded in the feature cache for this corpus state (one check per
    state for every trial on every node), else decoded (per-machine verdict cache) and recorded."""
    if not (use_cache and cfg.feature_cache):
        return decode_verdicts(paths, root=root, use_cache=use_cache)
    from growsearch.data.feature_cache import load_verdicts, resolved_cache_dir, store_verdicts

    cache = resolved_cache_dir(cfg)
    verdicts = load_verdicts(cache, paths)
    if verdicts is None:
        verdicts = decode_verdicts(paths, root=root, use_cache=use_cache)
        store_verdicts(cache, paths, verdicts)
    return verdicts


def build_splits(cfg: DataConfig, seed: int, *, use_cache: bool = True) -> Splits:
    """Build the train, dev and eval datasets of ``cfg``.

    Args:
        cfg: the data config.
        seed: training seed (drives the random training crops with the epoch and index;
            the subset is drawn from ``cfg.subset_seed``).
        use_cache: reuse the cached decode verdicts (False decodes every file again).

    Returns:
        :class:`Splits` with ``.train``, ``.dev``, ``.eval`` (:class:`ClipDataset`) and,
        for ASVspoof, ``.asv`` (ASV protocol/score files for t-DCF, if present).

    Raises:
        DataError: missing root (names the environment variable), protocol, bad protocol
            line (``file:line``), missing or unusable audio file, or a split that ends up
            empty.
    """
    root = resolve_root(cfg)
    listed: dict[str, list[Item]] = {}
    for split in SPLITS:  # every protocol is read before any audio
        items = list_items(cfg, root, split)
        listed[split] = subsample(
            items, split=split, seed=cfg.subset_seed,
            max_per_class=cfg.max_per_class.get(split) if cfg.max_per_class else None,
            max_per_attack=cfg.max_per_attack.get(split) if cfg.max_per_attack else None,
        )
    # every file of every split is decoded before anything trains (cached verdicts reused)
    paths = list(dict.fromkeys(it.path for split in SPLITS for it in listed[split]))
    verdicts = _decode_once(cfg, paths, root, use_cache)
    datasets: dict[str, ClipDataset] = {}
    for split in SPLITS:
        items, skipped = validate_items(listed[split], verdicts, on_bad_file=cfg.on_bad_file)
        for _path, reason in skipped:
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
