"""Paths built from user text stay inside their root.

Every folder named after something a user typed (a study name, Ray's experiment name) is
built with :func:`child_path`, which refuses a name that is empty, absolute, holds a path
separator or ``..``, or resolves outside ``root`` (through a symlink, say).
"""

from __future__ import annotations

import os
from pathlib import Path

from growsearch.errors import ConfigError


def child_path(root: str | Path, name: str, what: str = "name") -> Path:
    """``root / name``, refused unless it is a direct child of ``root``.

    Raises:
        ConfigError: ``name`` would leave ``root`` (``../x``, ``a/b``, ``/abs``, ``..``).
    """
    root_p = Path(root)
    bad = (not name or name in (".", "..") or "/" in name or (os.altsep or "/") in name or "\0" in name
           or Path(name).is_absolute())
    out = root_p / name
    if not bad:
        try:
            out.resolve().relative_to(root_p.resolve())
        except ValueError:
            bad = True
    if bad:
        raise ConfigError(f"{what} {name!r} would leave its folder {root_p}; use letters, digits, '_', '.' and '-'")
    return out
