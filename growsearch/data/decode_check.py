"""Decode every listed audio file once, in parallel, and remember the verdict per file.

A file's header can be intact while its audio data is cut or corrupt (a truncated FLAC);
only decoding it finds that. :func:`decode_verdicts` decodes each file with
:func:`~growsearch.data.audio.read_audio` on a thread pool (libsndfile releases the GIL, so
threads scale over cores) and returns, per file, ``None`` (usable) or the one-line reason.

Verdicts are cached per file content in a JSON file per corpus root under
:func:`cache_dir` (``$GROWSEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/growsearch``, else
``~/.cache/growsearch``), keyed by the file's absolute path, size and modification time
(ns) and by :data:`CHECK_VERSION` (the rules of :mod:`growsearch.data.audio`): a changed
file is decoded again, an unchanged one is not. A study therefore pays for the decode once
per machine: ``growsearch run`` checks the corpus before Ray starts and every trial on that
machine then reads the verdicts. A cache that cannot be read or written is ignored (the
files are decoded, nothing is lost).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from growsearch.atomic import atomic_write_text
from growsearch.data.audio import read_audio
from growsearch.data.machine_cache import CACHE_ENV, cache_dir
from growsearch.errors import DataError

log = logging.getLogger(__name__)

#: Bump when what :func:`~growsearch.data.audio.read_audio` accepts changes.
CHECK_VERSION = 1

__all__ = ["CACHE_ENV", "CHECK_VERSION", "cache_dir", "decode_verdicts"]


def _verdict(path: Path) -> str | None:
    try:
        read_audio(path)
    except DataError as exc:
        return str(exc)
    return None


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def _cache_file(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]
    return cache_dir() / "data_check" / f"{key}.json"


def _load(path: Path) -> dict[str, list]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != CHECK_VERSION or not isinstance(doc.get("files"), dict):
        return {}
    return doc["files"]


def decode_verdicts(paths: Iterable[Path], *, root: Path | None = None, use_cache: bool = True,
                    workers: int | None = None) -> dict[Path, str | None]:
    """Decode every file (cached verdicts reused) and return ``{path: None or reason}``.

    Args:
        paths: the audio files (missing ones get the reason ``... is missing``).
        root: the corpus root; names the cache file (default: the common parent).
        use_cache: read and update the verdict cache; False decodes everything again
            (the fresh verdicts are still written).
        workers: decoding threads (default: the CPUs this process may use).

    Returns:
        The verdict of each path: ``None`` when it decodes to usable audio, else the
        one-line :class:`~growsearch.errors.DataError` message naming the file.
    """
    files = list(dict.fromkeys(Path(p) for p in paths))
    if not files:
        return {}
    if root is None:
        root = Path(os.path.commonpath([os.path.abspath(p.parent) for p in files]))
    cfile = _cache_file(root)
    cached = _load(cfile)
    out: dict[Path, str | None] = {}
    todo: list[Path] = []
    stamps: dict[Path, list[int] | None] = {}
    for p in files:
        stamp = stamps[p] = _stamp(p)
        hit = cached.get(os.path.abspath(p)) if (use_cache and stamp is not None) else None
        if hit is not None and hit[:2] == stamp:
            out[p] = hit[2]
        else:
            todo.append(p)
    if todo:
        t0 = time.perf_counter()
        n = workers or max(1, min(32, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
        if n == 1 or len(todo) < 8:
            verdicts = [_verdict(p) for p in todo]
        else:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="gs-decode") as ex:
                verdicts = list(ex.map(_verdict, todo, chunksize=64))
        dt = time.perf_counter() - t0
        log.info("data check: decoded %d file(s) in %.1f s (%.0f files/s, %d threads); %d verdict(s) cached",
                 len(todo), dt, len(todo) / dt if dt > 0 else float("inf"), n, len(files) - len(todo))
        fresh = {}
        for p, v in zip(todo, verdicts):
            out[p] = v
            if stamps[p] is not None and _stamp(p) == stamps[p]:  # unchanged while it was decoded
                fresh[os.path.abspath(p)] = [*stamps[p], v]  # type: ignore[misc]
        if fresh:
            _store(cfile, fresh)
    return out


def _store(cfile: Path, fresh: dict[str, list]) -> None:
    merged = _load(cfile)  # another process may have added verdicts since we read it
    merged.update(fresh)
    try:
        atomic_write_text(cfile, json.dumps({"version": CHECK_VERSION, "files": merged}, separators=(",", ":")))
    except OSError as exc:
        log.debug("data check: verdict cache %s not written: %s", cfile, exc)
