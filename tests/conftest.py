"""Shared test set-up. Area-specific fixtures live in the test modules that use them."""

from __future__ import annotations

import os
import tempfile

import torch

# The data check's verdict cache (growsearch.data.decode_check): one throw-away folder per
# test session, inherited by the CLI subprocesses and Ray workers the tests start.
os.environ.setdefault("GROWSEARCH_CACHE_DIR", tempfile.mkdtemp(prefix="growsearch-test-cache-"))

# Two cores: keep torch from oversubscribing them in tests.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The ``toy_registered`` fixture (tests/growth_toy.py) for the growth-machinery tests.
pytest_plugins = ["growth_toy"]
