"""The names growsearch's files and code agree on, each defined once.

Every module, the tests included, imports these tuples instead of spelling the names out:
a name that is not here is unknown everywhere and raises (never falls into an ``else``).

Sections (each owned by one part of the code, filled in as it moves here):
- growth events: forms, inits, shrink rules, freeze policies, optimizer-state modes;
- training: optimizer algorithms;
- search: objectives and their directions, samplers;
- audio: the sample rate every front-end and backbone assumes.
"""

from __future__ import annotations

# --- audio -----------------------------------------------------------------------------

#: Every corpus is decoded, resampled and cropped at this rate (Hz).
SAMPLE_RATE = 16_000

# --- growth events ---------------------------------------------------------------------

# --- training --------------------------------------------------------------------------

# --- search ----------------------------------------------------------------------------
