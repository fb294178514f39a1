"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A killed process or a full disk leaves either the old file or the new one, never half of
one; the temporary file is removed on any failure. :func:`exclusive_lock` serialises the
processes that build the same folder (the generated corpus, a feature-cache entry);
:func:`pid_alive` tells whether a process that left a file behind still runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then move it into place.

    Raises:
        OSError: the folder cannot be created or the file written (the old file is intact).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    def write(fh: IO[Any]) -> None:
        fh.write(text)

    return atomic_write(path, write)


@contextlib.contextmanager
def exclusive_lock(lock_path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the ``with`` body.

    Best effort: where the lock file cannot be opened or locked (a read-only folder, a network
    file system without locks) the body runs unlocked, so callers still finish their work
    with an atomic rename and re-check what another process may have written meanwhile.
    """
    try:
        lock = open(lock_path, "a")  # noqa: SIM115 - held until the body ends
    except OSError:
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
