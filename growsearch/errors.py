"""User-facing errors.

Every error a user can cause with bad input (a file, a YAML key, a schedule) is a
:class:`GrowsearchError`. The command line prints its message on one line and exits
with :attr:`GrowsearchError.exit_code`, never with a traceback.
"""

from __future__ import annotations


class GrowsearchError(Exception):
    """An error caused by input the user can fix; its message says what and where."""

    exit_code: int = 2


class ConfigError(GrowsearchError):
    """A YAML file, a key or a value in a config or study is wrong."""


class ScheduleError(GrowsearchError):
    """A growth schedule is impossible for the backbone or the training run."""


class DataError(GrowsearchError):
    """A dataset root, protocol line or audio file cannot be used."""


class RunFailed(GrowsearchError):
    """A run ended without a result (NaN loss, all trials failed); exit code 1."""

    exit_code = 1
