"""Where growsearch keeps what it computes once per machine (decode verdicts, features,
generated corpora). Imports nothing heavy: input errors are reported without torch."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GROWSEARCH_CACHE_DIR"


def cache_dir() -> Path:
    """Where growsearch caches per-machine data: ``$GROWSEARCH_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/growsearch``, else ``~/.cache/growsearch``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(os.path.expanduser(env))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "growsearch"
