"""Where a run's progress goes: stderr only, a live display on a terminal, plain lines in a pipe.

:class:`Console` is callable with one line of text (the ``log`` of
:func:`growsearch.search.runner.run_study`), so it can be passed wherever a ``say`` function
is expected. On a terminal it also keeps a *live region* at the bottom of the screen (a
progress bar and one line per running trial), redrawn in place and kept below the log
lines; in a pipe there is no live region and the caller prints status lines instead.

Verbosity: ``0`` (``--quiet``) prints nothing but warnings; ``1`` (default) the phases,
trial starts and ends and the status; ``2`` (``--verbose``) also one line per trial epoch.
Nothing here imports torch or Ray, so the first phase line appears at once.
"""

from __future__ import annotations

import shutil
import sys
from typing import IO

__all__ = ["Console", "bar"]

QUIET, NORMAL, VERBOSE = 0, 1, 2


def bar(done: int, total: int | None, width: int = 20) -> str:
    """``[#####---------------]`` for ``done`` of ``total`` (``[?]`` without a total)."""
    if not total:
        return "[" + "?" * width + "]"
    n = max(0, min(width, round(width * done / total)))
    return "[" + "#" * n + "-" * (width - n) + "]"


class Console:
    """Progress output on ``stream`` (default stderr).

    Args:
        stream: where everything goes.
        verbosity: ``0`` quiet, ``1`` normal, ``2`` verbose.
        live: draw the live region (default: ``stream`` is a terminal).
    """

    def __init__(self, stream: IO[str] | None = None, *, verbosity: int = NORMAL, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.verbosity = verbosity
        if live is None:
            try:
                live = bool(self.stream.isatty())
            except (AttributeError, ValueError):
                live = False
        self.live = live
        self._drawn = 0  # lines of the live region now on screen
        self._region: list[str] = []

    # ---- log lines ------------------------------------------------------------------------------
    def __call__(self, text: str) -> None:
        self.line(text)

    def line(self, text: str, level: int = NORMAL) -> None:
        """One log line (above the live region), shown at ``level`` and above."""
        if self.verbosity < level:
            return
        self._erase()
        self.stream.write(text.rstrip("\n") + "\n")
        self._draw()

    def phase(self, text: str) -> None:
        """What the run is doing now (``importing torch and Ray``...), as a log line."""
        self.line(f"[growsearch] {text}")

    def warn(self, text: str) -> None:
        """Shown even with ``--quiet``."""
        self.line(text, level=QUIET)

    # ---- the live region (terminals only) ----------------------------------------------------------
    def region(self, lines: list[str]) -> None:
        """Replace the live region by ``lines`` (ignored in a pipe or with ``--quiet``)."""
        if not self.live or self.verbosity < NORMAL:
            return
        self._erase(flush=False)
        self._region = list(lines)
        self._draw()

    def close(self) -> None:
        """Remove the live region (the last status stays in the log as a plain line)."""
        self._erase()
        self._region = []

    def _erase(self, flush: bool = True) -> None:
        if self._drawn:
            self.stream.write("\x1b[2K\r" + "\x1b[1A\x1b[2K" * self._drawn)
            self._drawn = 0
            if flush:
                self.stream.flush()

    def _draw(self) -> None:
        if self.live and self._region and self.verbosity >= NORMAL:
            width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
            for ln in self._region:
                self.stream.write(ln[:width] + "\n")
            self._drawn = len(self._region)
        self.stream.flush()
