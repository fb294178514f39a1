"""Shared test set-up. Area-specific fixtures live in the test modules that use them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

# The data check's verdict cache (growsearch.data.decode_check): one throw-away folder per
# test session, inherited by the CLI subprocesses and Ray workers the tests start.
os.environ.setdefault("GROWSEARCH_CACHE_DIR", tempfile.mkdtemp(prefix="growsearch-test-cache-"))

# Two cores: keep torch from oversubscribing them in tests.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The ``toy_registered`` fixture (tests/growth_toy.py) for the growth-machinery tests.
pytest_plugins = ["growth_toy"]

#: pytest-timeout bounds (seconds) for the end-to-end tests, by marker; every other test has
#: the ``timeout`` of pyproject.toml (300 s). The slowest slow tests take about 170 s alone on
#: 2 cores (a Ray study with two drivers, the wall-time budget); an explicit
#: ``@pytest.mark.timeout(N)`` on a test wins over both.
MARKER_TIMEOUTS_S = {"docker": 7200, "slow": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        for marker, seconds in MARKER_TIMEOUTS_S.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.timeout(seconds))
                break


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic corpus of seed 0 (``synth_size: tiny``, ``synth_seed`` left at 0),
    generated once per test session for every test that trains or searches on it.

    Read-only: training, the data check and the search only read it. A test that changes
    files in it must work on a copy (``shutil.copytree(corpus, tmp_path / "synth")``).
    """
    from growsearch.data.synthetic import ensure_corpus

    root = tmp_path_factory.mktemp("synth") / "tiny"
    ensure_corpus(root, seed=0, size="tiny")
    return root
