"""The shared-prefix cache on disk: verified entries, safe concurrent writes, bounded size.

Each entry is one training state (a :mod:`growsearch.backbones.checkpoint` file, see
:mod:`growsearch.train.state`) under ``DIR/<key>.pt`` with its SHA-256 in ``DIR/<key>.sha256``.
What this module guarantees, whatever the entry holds:

- **Never trusted unverified.** :meth:`PrefixCache.lookup` returns an entry only when both
  files exist and the digest of ``<key>.pt`` matches; a corrupt, truncated or half-written
  entry is removed (and rebuilt by the next run that trains that far).
- **Safe under many writers.** :meth:`PrefixCache.store` holds an exclusive lock per key
  (:func:`growsearch.atomic.exclusive_lock`) and re-checks the entry inside it, so one writer
  writes; the state goes to a temporary file that is moved into place with ``os.replace``
  after its digest is written, so a reader never sees a partial file under a valid digest.
- **Bounded disk.** After every write the cache is cut to its size limit by least-recent use
  (a hit touches the entry; eviction removes the oldest first). The limit is recorded in the
  folder (``DIR/limit.json``, written by :func:`set_limit`, e.g. from the study's
  ``execution.prefix_cache_max_gb``), so every trial of a study uses the same one;
  :data:`DEFAULT_MAX_BYTES` when none is recorded. The same file records ``max_wait_s``, how
  long a trial waits for a prefix another trial is training (:mod:`growsearch.train.prefix_claims`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from growsearch.atomic import atomic_write_text, exclusive_lock

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_WAIT_S", "LIMIT_FILE", "PrefixCache", "set_limit"]

#: The size limit of a cache folder that records none (10 GiB).
DEFAULT_MAX_BYTES = 10 * 2**30
#: How long a trial waits for a prefix that another trial is training, when the folder records nothing.
DEFAULT_MAX_WAIT_S = 3600.0
#: The file in a cache folder that records its size limit: ``{"max_bytes": N}``.
LIMIT_FILE = "limit.json"
_ENTRY = ".pt"
_DIGEST = ".sha256"
_LOCK = ".lock"
_EVICT_LOCK = "evict.lock"
#: Temporary files older than this (seconds) are left over from killed writers.
_STALE_TMP_S = 3600.0


def set_limit(root: str | Path, max_bytes: int, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> None:
    """Record ``max_bytes`` as the size limit of the cache folder ``root`` (created if missing),
    and ``max_wait_s``, the longest a trial waits for a prefix another trial is training."""
    atomic_write_text(Path(root) / LIMIT_FILE, json.dumps({"max_bytes": int(max_bytes), "max_wait_s": float(max_wait_s)}) + "\n")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@dataclass(frozen=True)
class PrefixCache:
    """A prefix-cache folder.

    Attributes:
        root: the folder (created on the first write).
        log: where eviction and corruption notices go.
    """

    root: Path
    log: Callable[[str], None] = lambda _msg: None

    def entry(self, key: str) -> Path:
        """The state file of ``key``."""
        return self.root / (key + _ENTRY)

    def _digest_file(self, key: str) -> Path:
        return self.root / (key + _DIGEST)

    @property
    def max_bytes(self) -> int:
        """The recorded size limit, else :data:`DEFAULT_MAX_BYTES`."""
        try:
            v = json.loads((self.root / LIMIT_FILE).read_text())["max_bytes"]
            return int(v) if isinstance(v, int | float) and v > 0 else DEFAULT_MAX_BYTES
        except (OSError, ValueError, KeyError, TypeError):
            return DEFAULT_MAX_BYTES

    @property
    def max_wait_s(self) -> float:
        """The recorded longest wait for a prefix being trained, else :data:`DEFAULT_MAX_WAIT_S`."""
        try:
            v = json.loads((self.root / LIMIT_FILE).read_text())["max_wait_s"]
            return float(v) if isinstance(v, int | float) and v >= 0 else DEFAULT_MAX_WAIT_S
        except (OSError, ValueError, KeyError, TypeError):
            return DEFAULT_MAX_WAIT_S

    def has(self, key: str) -> bool:
        """Both files of ``key`` exist (unverified: what a writer checks before writing)."""
        return self.entry(key).is_file() and self._digest_file(key).is_file()

    def lookup(self, key: str) -> Path | None:
        """The verified state file of ``key``, touched as recently used; ``None`` on a miss.

        An entry whose digest does not match its file is removed (logged) and is a miss.
        """
        pt, dg = self.entry(key), self._digest_file(key)
        try:
            expected = dg.read_text().strip()
            actual = _file_digest(pt)
        except FileNotFoundError:
            return None  # absent, half-written (no digest yet) or evicted meanwhile
        except OSError as exc:
            self.log(f"prefix cache: cannot read {pt.name} ({exc}); not used")
            return None
        if actual != expected:
            self.log(f"prefix cache: {pt.name} does not match its digest (corrupt or partial); removed")
            self.discard(key)
            return None
        self._touch(key)
        return pt

    def discard(self, key: str) -> None:
        """Remove the entry of ``key`` (digest first, so no reader trusts the state meanwhile)."""
        with exclusive_lock(self._lock_file(key)):
            _unlink(self._digest_file(key))
            _unlink(self.entry(key))

    def store(self, key: str, write: Callable[[Path], None]) -> bool:
        """Write the entry of ``key`` unless one exists, then cut the cache to its limit.

        Args:
            write: writes the state to the path it is given (a temporary file).

        Returns:
            ``True`` when this call wrote the entry, ``False`` when it was there already
            (then it is touched as recently used).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self._lock_file(key)):
            if self.has(key):
                self._touch(key)
                return False
            fd, name = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.root)
            os.close(fd)
            tmp = Path(name)
            try:
                write(tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                atomic_write_text(self._digest_file(key), _file_digest(tmp) + "\n")
                os.replace(tmp, self.entry(key))
            except BaseException:
                _unlink(tmp)
                _unlink(self._digest_file(key))
                raise
        self.evict()
        return True

    def size(self) -> int:
        """Bytes the cache's entries take now."""
        return sum(size for _key, size, _t in self._entries())

    def evict(self) -> list[str]:
        """Remove the least recently used entries until the cache fits its limit.

        Returns:
            The keys removed, oldest first.
        """
        limit = self.max_bytes
        removed: list[str] = []
        with exclusive_lock(self.root / _EVICT_LOCK):
            self._remove_stale_tmp()
            entries = sorted(self._entries(), key=lambda x: x[2])
            total = sum(size for _key, size, _t in entries)
            for key, size, _t in entries:
                if total <= limit:
                    break
                self.discard(key)
                _unlink(self._lock_file(key))
                total -= size
                removed.append(key)
        if removed:
            self.log(f"prefix cache: evicted {len(removed)} least recently used entr{'y' if len(removed) == 1 else 'ies'} "
                     f"(limit {limit / 2**20:.1f} MiB)")
        return removed

    # ---- internals -------------------------------------------------------------------------
    def _lock_file(self, key: str) -> Path:
        return self.root / (key + _LOCK)

    def _touch(self, key: str) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.entry(key))

    def _entries(self) -> list[tuple[str, int, float]]:
        """``(key, bytes, last use)`` of every entry (a state file, with its digest if any)."""
        out = []
        try:
            files = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        for f in files:
            if f.suffix != _ENTRY or f.name.startswith("."):
                continue
            key = f.name[: -len(_ENTRY)]
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            size = st.st_size
            with contextlib.suppress(FileNotFoundError):
                size += self._digest_file(key).stat().st_size
            out.append((key, size, st.st_mtime))
        return out

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for f in self.root.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if now - f.stat().st_mtime > _STALE_TMP_S:
                    f.unlink()
