"""The dataset type every loader returns, and the three splits.

Each item is ``(wave, label, utt_id, attack)``: ``wave`` a float32 tensor ``(clip_samples,)``
at 16 kHz, ``label`` 1 for bona fide and 0 for spoof, ``utt_id`` the utterance name and
``attack`` the spoofing system (``bonafide`` for bona fide items). The default collate
function batches them to ``(batch, clip_samples)``, ``(batch,)`` and two lists of strings.

Training crops are drawn from a per-item generator seeded with ``(seed, epoch, index)``:
call :meth:`ClipDataset.set_epoch` before each epoch; the same epoch gives the same crops
in any process, with any number of DataLoader workers (do not use ``persistent_workers``,
which would keep the workers' copy at the old epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from growsearch.data.audio import fix_length, read_audio
from growsearch.errors import DataError

log = logging.getLogger(__name__)

BONAFIDE = 1
SPOOF = 0


@dataclass(frozen=True)
class Item:
    """Metadata of one utterance.

    Attributes:
        utt: utterance id (unique within a split).
        speaker: speaker id (``-`` when unknown, e.g. FakeOrReal).
        attack: spoofing system (``A01``, ``AA``, ``fake``), ``bonafide`` for bona fide.
        env: acoustic environment (PA: ``aaa``..``ccc``; ``-`` otherwise).
        key: ``bonafide`` or ``spoof``.
        path: the audio file.
        source: where the item was listed (``protocol.txt:12`` or the folder).
    """

    utt: str
    speaker: str
    attack: str
    env: str
    key: str
    path: Path
    source: str = ""

    @property
    def label(self) -> int:
        """1 for bona fide, 0 for spoof."""
        return BONAFIDE if self.key == "bonafide" else SPOOF


def listed_at(message: str, item: Item) -> str:
    """``message`` with where ``item`` was listed appended: ``... (listed at protocol:line)``."""
    return f"{message} (listed at {item.source})" if item.source and "(listed at " not in message else message


def _read(item: Item) -> np.ndarray:
    try:
        return read_audio(item.path)
    except DataError as exc:  # e.g. the file changed after the up-front check
        raise DataError(listed_at(str(exc), item)) from None


class ClipDataset(Dataset):
    """Fixed-length clips of a list of utterances.

    Args:
        items: the utterances, in a fixed order.
        split: ``train``, ``dev`` or ``eval`` (train crops at random, the others take the
            first L samples).
        clip_samples: L.
        seed: base seed of the training crops.
        skipped: ``(path, reason)`` of files left out under ``on_bad_file: skip``.

    Attributes:
        items: list of :class:`Item`.
        skipped: list of ``(path, reason)``.
        epoch: the epoch set by :meth:`set_epoch` (0 at start).
    """

    def __init__(self, items: list[Item], *, split: str, clip_samples: int, seed: int = 0,
                 skipped: list[tuple[str, str]] | None = None) -> None:
        self.items = list(items)
        self.split = split
        self.clip_samples = int(clip_samples)
        self.seed = int(seed)
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (training split; no effect on dev/eval)."""
        self.epoch = int(epoch)

    @property
    def random_crop(self) -> bool:
        return self.split == "train"

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> list[int]:
        """Labels of all items in order (no audio read)."""
        return [it.label for it in self.items]

    def counts(self) -> dict[str, int]:
        """``{"bonafide": n, "spoof": m}``."""
        b = sum(it.label for it in self.items)
        return {"bonafide": b, "spoof": len(self.items) - b}

    def attack_counts(self) -> dict[str, int]:
        """Number of items per attack, sorted by attack name."""
        out: dict[str, int] = {}
        for it in self.items:
            out[it.attack] = out.get(it.attack, 0) + 1
        return dict(sorted(out.items()))

    def waveform(self, index: int) -> np.ndarray:
        """The whole decoded waveform of item ``index``: ``(samples,)`` float32, 16 kHz.

        Raises:
            DataError: the file cannot be decoded (names the file and its protocol line).
        """
        return _read(self.items[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str, str]:
        it = self.items[index]
        wave = _read(it)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.random_crop else None
        clip = fix_length(wave, self.clip_samples, rng)
        return torch.from_numpy(np.array(clip, dtype=np.float32)), it.label, it.utt, it.attack


@dataclass(frozen=True)
class AsvFiles:
    """ASV protocol and score files of one split (for min t-DCF); None when absent."""

    protocol: Path | None = None
    scores: Path | None = None


@dataclass
class Splits:
    """The three splits of a corpus.

    Attributes:
        train, dev, eval: the datasets.
        dataset: corpus name.
        root: the corpus folder actually read.
        asv: per split (``dev``, ``eval``) the ASV files found for t-DCF (ASVspoof only).
    """

    train: ClipDataset
    dev: ClipDataset
    eval: ClipDataset
    dataset: str
    root: Path
    asv: dict[str, AsvFiles] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[str, ClipDataset]]:
        yield from (("train", self.train), ("dev", self.dev), ("eval", self.eval))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """All files skipped in any split, ``(path, reason)``."""
        return [*self.train.skipped, *self.dev.skipped, *self.eval.skipped]

    def summary(self) -> dict[str, object]:
        """Counts per split and class, attacks, skipped files: JSON-ready."""
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "splits": {
                name: {**ds.counts(), "total": len(ds), "attacks": ds.attack_counts(), "skipped": len(ds.skipped)}
                for name, ds in self
            },
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "asv": {k: {"protocol": str(v.protocol) if v.protocol else None,
                        "scores": str(v.scores) if v.scores else None} for k, v in self.asv.items()},
        }
