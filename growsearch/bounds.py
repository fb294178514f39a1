"""Numeric bounds shared by the configs: every number a user writes has a sane range.

Seeds are ``0 .. 2**32 - 1`` (what NumPy, torch and Python's ``random`` all accept); widths
and clip lengths are capped so that a typo (``neurons: 1e26``) is one line at validation,
not a refused allocation mid-run. Model sizes are checked separately by
:mod:`growsearch.backbones.size` (parameters counted on the meta device).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

SEED_MAX = 2**32 - 1
#: A seed: 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
#: Units one growth event may add or remove, and the top of a search space's neuron range.
NEURONS_MAX = 10_000_000
#: Samples of one clip: 10 minutes at 16 kHz.
CLIP_SAMPLES_MAX = 16_000 * 600
EPOCHS_MAX = 100_000
BATCH_MAX = 1_000_000
WORKERS_MAX = 1024
CPUS_MAX = 100_000
GPUS_MAX = 10_000
TRIALS_MAX = 10_000_000


def check_seed(value: object, where: str) -> int:
    """``value`` as a seed, or :class:`~growsearch.errors.ConfigError` naming ``where``."""
    from growsearch.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{where}: expected an integer seed in 0..{SEED_MAX} (got {value!r})")
    return value
