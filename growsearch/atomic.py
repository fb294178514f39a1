"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A killed process or a full disk leaves either the old file or the new one, never half of
one; the temporary file is removed on any failure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
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
