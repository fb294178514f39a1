"""ASVspoof 2019 LA and PA: file lists from the CM protocols (never by globbing).

Layout (``shared/docs/DATA.md``), with ``<S>`` = ``LA`` or ``PA``::

    <S>/ASVspoof2019_<S>_train/flac/<S>_T_*.flac      (dev: <S>_D_*, eval: <S>_E_*)
    <S>/ASVspoof2019_<S>_cm_protocols/ASVspoof2019.<S>.cm.train.trn.txt
                                      ASVspoof2019.<S>.cm.dev.trl.txt
                                      ASVspoof2019.<S>.cm.eval.trl.txt
    <S>/ASVspoof2019_<S>_asv_protocols/, <S>/ASVspoof2019_<S>_asv_scores/

A protocol line is ``SPEAKER UTT ENV SYSTEM KEY`` (whitespace separated). The root given
may be ``<S>`` itself or the folder holding it.
"""

from __future__ import annotations

from pathlib import Path

from growsearch.data.dataset import AsvFiles, Item
from growsearch.errors import DataError
from growsearch.yamlio import read_text

PROTOCOL_NAMES: dict[str, str] = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}
KEYS: tuple[str, ...] = ("bonafide", "spoof")


def corpus_dir(root: Path, scenario: str) -> Path:
    """The ``LA``/``PA`` folder: ``root`` itself or ``root/<scenario>``.

    Raises:
        DataError: neither holds the CM protocol folder.
    """
    name = f"ASVspoof2019_{scenario}_cm_protocols"
    for cand in (root, root / scenario):
        if (cand / name).is_dir():
            return cand
    raise DataError(f"{root}: no {name}/ folder here or in {root / scenario}; is this the ASVspoof 2019 {scenario} root?")


def protocol_path(cdir: Path, scenario: str, split: str) -> Path:
    """Path of the CM protocol of ``split``."""
    return cdir / f"ASVspoof2019_{scenario}_cm_protocols" / f"ASVspoof2019.{scenario}.cm.{PROTOCOL_NAMES[split]}.txt"


def audio_dir(cdir: Path, scenario: str, split: str) -> Path:
    """Folder of the FLAC files of ``split``."""
    return cdir / f"ASVspoof2019_{scenario}_{split}" / "flac"


def read_protocol(path: Path, audio_folder: Path) -> list[Item]:
    """Parse a CM protocol into items (audio paths are not checked here).

    Raises:
        DataError: missing protocol, a line without exactly 5 columns, an unknown key or
            a repeated utterance id; the message is ``file:line: ...``.
    """
    text = read_text(path, what="CM protocol", error=DataError)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        where = f"{path}:{lineno}"
        if len(cols) != 5:
            raise DataError(f"{where}: expected 5 columns 'SPEAKER UTT ENV SYSTEM KEY', got {len(cols)}: {line.strip()!r}")
        speaker, utt, env, system, key = cols
        if key not in KEYS:
            raise DataError(f"{where}: unknown key {key!r}; valid: {', '.join(KEYS)}")
        if utt in seen:
            raise DataError(f"{where}: utterance {utt} listed twice (first at line {seen[utt]})")
        seen[utt] = lineno
        items.append(Item(utt=utt, speaker=speaker, attack="bonafide" if key == "bonafide" else system,
                          env=env, key=key, path=audio_folder / f"{utt}.flac", source=where))
    if not items:
        raise DataError(f"{path}: CM protocol lists no utterances")
    return items


def list_split(root: Path, scenario: str, split: str) -> list[Item]:
    """Items of one split of ``LA`` or ``PA`` under ``root``."""
    cdir = corpus_dir(root, scenario)
    return read_protocol(protocol_path(cdir, scenario, split), audio_dir(cdir, scenario, split))


def find_asv_files(root: Path, scenario: str) -> dict[str, AsvFiles]:
    """ASV protocol and score files for t-DCF, per split (``dev``, ``eval``), if present.

    Prefers the gender-independent files (``.gi.``) the official t-DCF script uses.
    """
    cdir = corpus_dir(root, scenario)
    pdir = cdir / f"ASVspoof2019_{scenario}_asv_protocols"
    sdir = cdir / f"ASVspoof2019_{scenario}_asv_scores"
    out: dict[str, AsvFiles] = {}
    for split in ("dev", "eval"):
        proto = _pick(pdir, split, exclude="scores")
        scores = _pick(sdir, split, require="scores")
        if proto or scores:
            out[split] = AsvFiles(protocol=proto, scores=scores)
    return out


def _pick(folder: Path, split: str, *, require: str = "", exclude: str = "") -> Path | None:
    if not folder.is_dir():
        return None
    cands = sorted(p for p in folder.iterdir()
                   if p.is_file() and f".{split}." in p.name and p.suffix == ".txt"
                   and (not require or require in p.name) and (not exclude or exclude not in p.name))
    if not cands:
        return None
    gi = [p for p in cands if ".gi." in p.name]
    return (gi or cands)[0]
