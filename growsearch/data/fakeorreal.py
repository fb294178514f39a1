"""FakeOrReal: the label is the folder (``real`` = bona fide, ``fake`` = spoof).

Layout (``shared/docs/DATA.md``)::

    <variant>/{training,validation,testing}/{real,fake}/*.wav

with ``<variant>`` one of ``for-norm``, ``for-2seconds``, ``for-rerecorded``,
``for-original``. The official split is used: training -> train, validation -> dev,
testing -> eval (a random re-split inflates scores). The root given may be the folder
holding the variant folders or the variant folder itself. Utterance ids are
``<real|fake>/<file stem>``; speaker and environment are unknown (``-``); the attack of a
fake item is ``fake``.
"""

from __future__ import annotations

from pathlib import Path

from growsearch.data.config import FOR_VARIANTS
from growsearch.data.dataset import Item
from growsearch.errors import DataError

SPLIT_FOLDERS: dict[str, str] = {"train": "training", "dev": "validation", "eval": "testing"}
LABEL_FOLDERS: dict[str, str] = {"real": "bonafide", "fake": "spoof"}


def variant_dir(root: Path, variant: str) -> Path:
    """The folder of ``variant``: ``root/<variant>`` or ``root`` itself.

    Raises:
        DataError: neither is a FakeOrReal variant folder (lists what is there).
    """
    if (root / variant).is_dir():
        return root / variant
    if root.name == variant and root.is_dir():
        return root
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in FOR_VARIANTS) if root.is_dir() else []
    hint = f"; variants found: {', '.join(found)}" if found else f"; expected one of {', '.join(FOR_VARIANTS)}"
    raise DataError(f"{root}: FakeOrReal variant folder {variant}/ not found{hint}")


def list_split(root: Path, variant: str, split: str) -> list[Item]:
    """Items of ``split`` (``train``, ``dev``, ``eval``) of a FakeOrReal variant.

    Raises:
        DataError: a split or label folder is missing, or holds no ``.wav`` file.
    """
    vdir = variant_dir(root, variant)
    sdir = vdir / SPLIT_FOLDERS[split]
    if not sdir.is_dir():
        raise DataError(f"{sdir}: FakeOrReal split folder not found (the {split} split)")
    items: list[Item] = []
    for folder, key in LABEL_FOLDERS.items():
        ldir = sdir / folder
        if not ldir.is_dir():
            raise DataError(f"{ldir}: FakeOrReal label folder not found (expected {'/ and '.join(LABEL_FOLDERS)}/ in {sdir})")
        wavs = sorted(p for p in ldir.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("."))
        if not wavs:
            raise DataError(f"{ldir}: no .wav files")
        for p in wavs:
            items.append(Item(utt=f"{folder}/{p.stem}", speaker="-", attack="bonafide" if key == "bonafide" else "fake",
                              env="-", key=key, path=p, source=str(ldir)))
    return items
