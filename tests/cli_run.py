"""Run the growsearch CLI as a user would from a shell (test helpers): in-process, or as a
subprocess of the installed ``growsearch`` script (for runs that start Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


#: The installed ``growsearch`` script of this interpreter's environment.
GROWSEARCH = str(Path(sys.executable).with_name("growsearch"))


def run_growsearch(*args: str) -> subprocess.CompletedProcess[str]:
    """``growsearch ARGS`` in a subprocess (unbuffered output captured, 15 minutes at most)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([GROWSEARCH, *args], capture_output=True, text=True, env=env, timeout=900)
