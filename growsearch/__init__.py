"""growsearch: search how a neural network should grow while it trains.

The public API is re-exported here; see the README for the command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

from growsearch.errors import ConfigError, DataError, GrowsearchError, ScheduleError
from growsearch.schedule import GrowthEvent, GrowthSchedule

__all__ = [
    "__version__",
    "GrowsearchError",
    "ConfigError",
    "DataError",
    "ScheduleError",
    "GrowthEvent",
    "GrowthSchedule",
]
