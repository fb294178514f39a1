"""Score files in the public ASVspoof format, and the ASV score files t-DCF needs.

CM score file, one utterance per line (as the ASVspoof 2019 evaluation scripts read it)::

    LA_E_2834763 - bonafide 1.8473
    LA_E_8877452 A11 spoof -3.2101

columns: utterance id, attack (``-`` for bona fide, else the system id), key
(``bonafide``/``spoof``), score (higher = more bona fide).

ASV score file (``ASVspoof2019.LA.asv.*.scores.txt``), three columns::

    LA_0039 target 2.3523
    LA_0014 nontarget -4.1811
    LA_0039 spoof -0.4312

columns: speaker id, key (``target``/``nontarget``/``spoof``), score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from growsearch.atomic import atomic_write
from growsearch.errors import DataError
from growsearch.metrics.eer import eer_threshold
from growsearch.yamlio import read_text

__all__ = [
    "ASV_KEYS",
    "AsvScores",
    "CM_KEYS",
    "ScoreRow",
    "make_rows",
    "read_asv_scores",
    "read_scores",
    "score_summary",
    "split_scores",
    "write_scores",
]

CM_KEYS: tuple[str, ...] = ("bonafide", "spoof")
ASV_KEYS: tuple[str, ...] = ("target", "nontarget", "spoof")


class AsvScores(NamedTuple):
    """ASV scores by trial kind, each ``(n,)`` float64; unpacks as ``tar, non, spoof``."""

    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray


class ScoreRow(NamedTuple):
    """One line of a CM score file."""

    utt: str
    attack: str
    key: str
    score: float


def _check_token(value: Any, what: str, i: int) -> str:
    s = str(value)
    if not s or any(c.isspace() for c in s):
        raise DataError(f"score row {i}: {what} must be one non-empty word (got {s!r})")
    return s


def write_scores(path: str | Path, rows: Iterable[ScoreRow | Sequence[Any]], *columns: Sequence[Any]) -> Path:
    """Write a CM score file atomically (temporary file + ``os.replace``).

    Called as ``write_scores(path, rows)`` or column-wise as
    ``write_scores(path, utts, attacks, keys, scores)``.

    Args:
        path: the file to write (folders are created).
        rows: ``(utt, attack, key, score)`` rows; ``key`` is ``bonafide`` or ``spoof``.
            With ``columns``: the utterance ids.
        columns: ``attacks, keys, scores`` (parallel sequences; scores may be an array).

    Returns:
        The path written.

    Raises:
        DataError: a row with a bad key, an id with whitespace, or a NaN/Inf score.
    """
    if columns:
        cols = [list(rows), *[list(c.tolist() if hasattr(c, "tolist") else c) for c in columns]]
        if len(cols) != 4 or len({len(c) for c in cols}) != 1:
            raise DataError(f"write_scores: expected utts, attacks, keys, scores of equal length, got lengths {[len(c) for c in cols]}")
        rows = list(zip(*cols))
    lines = []
    for i, row in enumerate(rows):
        if len(row) != 4:
            raise DataError(f"score row {i}: expected (utt, attack, key, score), got {len(row)} values")
        utt, attack, key, score = row
        utt, attack = _check_token(utt, "utterance id", i), _check_token(attack, "attack", i)
        if key not in CM_KEYS:
            raise DataError(f"score row {i} ({utt}): key must be one of {', '.join(CM_KEYS)} (got {key!r})")
        s = float(score)
        if not math.isfinite(s):
            raise DataError(f"score row {i} ({utt}): score is {s}; NaN/Inf cannot be scored")
        lines.append(f"{utt} {attack} {key} {s!r}\n")
    return atomic_write(path, lambda fh: fh.writelines(lines))


def make_rows(utts: Sequence[str], attacks: Sequence[str], labels: Sequence[int] | Any, scores: Sequence[float] | Any) -> list[ScoreRow]:
    """Rows from parallel sequences (labels: 1 = bona fide, 0 = spoof; tensors accepted).

    Bona fide rows get attack ``-`` whatever ``attacks`` says.

    Raises:
        DataError: the sequences differ in length or a label is not 0/1.
    """
    labels_l = [int(v) for v in np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)]
    scores_l = [float(v) for v in np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64).reshape(-1)]
    n = {len(utts), len(attacks), len(labels_l), len(scores_l)}
    if len(n) != 1:
        raise DataError(f"make_rows: utts/attacks/labels/scores differ in length ({len(utts)}/{len(attacks)}/{len(labels_l)}/{len(scores_l)})")
    rows = []
    for u, a, y, s in zip(utts, attacks, labels_l, scores_l):
        if y not in (0, 1):
            raise DataError(f"make_rows: label of {u} must be 1 (bona fide) or 0 (spoof), got {y}")
        rows.append(ScoreRow(str(u), "-" if y == 1 else str(a), "bonafide" if y == 1 else "spoof", s))
    return rows


def _lines(path: str | Path, what: str) -> list[tuple[int, list[str]]]:
    p = Path(path)
    text = read_text(p, what=what, error=DataError)
    out = [(i, ln.split()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if not out:
        raise DataError(f"{p}: {what} is empty")
    return out


def _score(p: Path, i: int, tok: str) -> float:
    try:
        s = float(tok)
    except ValueError:
        raise DataError(f"{p}:{i}: score is not a number (got {tok!r})") from None
    if not math.isfinite(s):
        raise DataError(f"{p}:{i}: score is {tok!r}; NaN/Inf cannot be scored")
    return s


def read_scores(path: str | Path) -> list[ScoreRow]:
    """Read a CM score file (``utt attack key score``; blank lines are skipped).

    Raises:
        DataError: a missing/empty file, or a line (named ``file:line``) with the wrong
            number of columns, an unknown key, a non-numeric or NaN/Inf score, or an
            utterance id seen before.
    """
    p = Path(path)
    rows: list[ScoreRow] = []
    seen: dict[str, int] = {}
    for i, cols in _lines(p, "score file"):
        if len(cols) != 4:
            raise DataError(f"{p}:{i}: expected 4 columns 'utt attack key score', got {len(cols)}: {' '.join(cols)[:80]!r}")
        utt, attack, key, tok = cols
        if key not in CM_KEYS:
            raise DataError(f"{p}:{i}: key must be one of {', '.join(CM_KEYS)} (got {key!r})")
        if utt in seen:
            raise DataError(f"{p}:{i}: utterance {utt!r} is scored twice (first on line {seen[utt]})")
        seen[utt] = i
        rows.append(ScoreRow(utt, attack, key, _score(p, i, tok)))
    return rows


def read_asv_scores(path: str | Path) -> AsvScores:
    """Read an ASVspoof 2019 ASV score file (``speaker key score``).

    Returns:
        :class:`AsvScores` ``(target, nontarget, spoof)``, float64 arrays.

    Raises:
        DataError: a missing/empty file, a bad line (``file:line``), or a key with no scores.
    """
    p = Path(path)
    out: dict[str, list[float]] = {k: [] for k in ASV_KEYS}
    for i, cols in _lines(p, "ASV score file"):
        if len(cols) != 3:
            raise DataError(f"{p}:{i}: expected 3 columns 'speaker key score', got {len(cols)}: {' '.join(cols)[:80]!r}")
        _, key, tok = cols
        if key not in out:
            raise DataError(f"{p}:{i}: key must be one of {', '.join(ASV_KEYS)} (got {key!r})")
        out[key].append(_score(p, i, tok))
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise DataError(f"{p}: no {', '.join(empty)} scores; t-DCF needs target, nontarget and spoof trials")
    return AsvScores(*(np.asarray(out[k], dtype=np.float64) for k in ASV_KEYS))


def split_scores(rows: Iterable[ScoreRow]) -> tuple[np.ndarray, np.ndarray]:
    """``(bonafide_scores, spoof_scores)`` as float64 arrays."""
    bona: list[float] = []
    spoof: list[float] = []
    for r in rows:
        (bona if r.key == "bonafide" else spoof).append(r.score)
    return np.asarray(bona, dtype=np.float64), np.asarray(spoof, dtype=np.float64)


def score_summary(rows: Sequence[ScoreRow], *, source: str = "scores") -> dict[str, Any]:
    """EER, its threshold, class counts and the EER of bona fide vs each attack; a ``note``
    when all scores are equal (the EER is then 1.0, as the official scorer gives it).

    Raises:
        DataError: no bona fide or no spoof rows (naming ``source``).
    """
    bona, spoof = split_scores(rows)
    if bona.size == 0 or spoof.size == 0:
        missing = "bonafide" if bona.size == 0 else "spoof"
        raise DataError(f"{source}: no {missing} rows; the EER needs both classes")
    e, thr = eer_threshold(bona, spoof)
    attacks = sorted({r.attack for r in rows if r.key == "spoof"})
    per_attack = {a: eer_threshold(bona, [r.score for r in rows if r.key == "spoof" and r.attack == a])[0] for a in attacks}
    out: dict[str, Any] = {
        "eer": e,
        "eer_threshold": thr,
        "n_bonafide": int(bona.size),
        "n_spoof": int(spoof.size),
        "per_attack_eer": per_attack,
    }
    if np.unique(np.concatenate([bona, spoof])).size == 1:
        out["note"] = (f"all {bona.size + spoof.size} scores are equal ({float(bona[0]):g}): they separate nothing, and "
                       f"the EER is {100 * e:g} % by the official scorer's convention (every trial is both accepted and "
                       "rejected at the only threshold)")
    return out
