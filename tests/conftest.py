"""Shared test set-up. Area-specific fixtures live in the test modules that use them."""

from __future__ import annotations

import os

import torch

# Two cores: keep torch from oversubscribing them in tests.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
