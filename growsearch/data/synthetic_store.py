"""This machine's copies of generated corpora, so that a corpus is generated once per machine.

Generating the ``bench`` profile takes about a minute of CPU; copying it takes well under a
second. :func:`growsearch.data.synthetic.ensure_corpus` asks :func:`fetch` for a copy before it
generates, and hands what it generated to :func:`keep`. A new working folder (a second study,
a test, a container run with a mounted cache) then gets the same bytes without the minute.

An entry lives under ``cache_dir()/synth/<size>-seed<seed>-<key>`` (``$GROWSEARCH_CACHE_DIR``,
else ``~/.cache/growsearch``). ``<key>`` hashes the growsearch version, the generator's version
numbers and settings and the source of both generator modules, so a changed generator never
serves old bytes. An entry is written into a temporary folder and renamed into place, and its
SHA-256 over every file's path and bytes is written next to it (``<entry>.sha256``) after it;
:func:`fetch` checks the copy it made against that digest, so a damaged, partial or edited
entry is removed and the corpus generated again, never trusted. The store is best effort: when
it cannot be read or written, the corpus is generated as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path

from growsearch import __version__
from growsearch.atomic import atomic_write_text
from growsearch.data import synthetic_bench
from growsearch.data.machine_cache import cache_dir

log = logging.getLogger(__name__)

_DIGEST_SUFFIX = ".sha256"


def entry(seed: int, size: str, generator_version: int, counts: tuple[int, int, int]) -> Path | None:
    """The store folder of the corpus of ``seed`` and ``size`` made by today's generator (None
    when there is no cache folder to use, e.g. no home directory)."""
    h = hashlib.sha256()
    h.update(f"{__version__}|{generator_version}|{synthetic_bench.VERSION}|{synthetic_bench.STRENGTH}|{counts}".encode())
    here = Path(__file__).resolve().parent
    try:
        for module in ("synthetic.py", "synthetic_bench.py"):
            h.update((here / module).read_bytes())
        return cache_dir() / "synth" / f"{size}-seed{seed}-{h.hexdigest()[:16]}"
    except (OSError, RuntimeError):
        return None


def digest(root: Path) -> str:
    """SHA-256 over every file under ``root``: relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def fetch(store: Path | None, dest: Path) -> bool:
    """Copy the entry ``store`` to ``dest`` (which must not exist); True when the copy matches
    the entry's digest. A copy that does not match is removed, and so is the entry."""
    if store is None:
        return False
    sums = store.with_name(store.name + _DIGEST_SUFFIX)
    try:
        if not (store.is_dir() and sums.is_file()):
            return False
        expected = sums.read_text().strip()
        shutil.copytree(store, dest)
        if digest(dest) == expected:
            return True
    except OSError as exc:
        log.debug("the stored synthetic corpus %s could not be copied: %s", store, exc)
        shutil.rmtree(dest, ignore_errors=True)
        return False
    log.warning("the stored synthetic corpus %s does not match its digest; removing it and generating the corpus", store)
    shutil.rmtree(dest, ignore_errors=True)
    forget(store)
    return False


def keep(root: Path, store: Path | None) -> None:
    """Store a copy of the freshly generated corpus ``root`` as ``store`` (unless there is one)."""
    if store is None:
        return
    sums = store.with_name(store.name + _DIGEST_SUFFIX)
    tmp = store.with_name(f".{store.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        if sums.is_file():
            return
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root, tmp)
        value = digest(tmp)
        if store.exists():  # an entry whose digest was never written: the bytes are the same, replace it
            shutil.rmtree(store, ignore_errors=True)
        os.rename(tmp, store)
        atomic_write_text(sums, value + "\n")
    except OSError as exc:
        log.debug("the synthetic corpus %s could not be stored in %s: %s", root, store, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def forget(store: Path) -> None:
    """Remove an entry and its digest."""
    store.with_name(store.name + _DIGEST_SUFFIX).unlink(missing_ok=True)
    shutil.rmtree(store, ignore_errors=True)
