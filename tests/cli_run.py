"""Run the growsearch CLI in-process, as a user would from a shell (test helper)."""

from __future__ import annotations

import pytest

from growsearch.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``growsearch ARGV``: its exit code, stdout and stderr."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err
