"""The prefix cache's files on a real folder: verified lookups, one writer among many
processes, least-recently-used eviction under a size limit, the study-level report.

Entries here are plain bytes (the cache does not read what it stores); training through the
cache is in ``tests/test_prefix_tree.py`` and ``tests/test_train.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from growsearch.report.reuse import prefix_reuse
from growsearch.search.attrs import TRIAL_METRICS, trial_prefix_reuse
from growsearch.train.prefix_cache import DEFAULT_MAX_BYTES, PrefixCache, set_limit


def _writer(data: bytes, delay: float = 0.0) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        time.sleep(delay)
        path.write_bytes(data)
    return write


def _age(cache: PrefixCache, key: str, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(cache.entry(key), (t, t))


def test_lookup_returns_only_verified_entries(tmp_path: Path) -> None:
    logs: list[str] = []
    cache = PrefixCache(tmp_path / "c", logs.append)
    assert cache.lookup("k") is None  # a miss on a folder that does not exist yet
    assert cache.store("k", _writer(b"state" * 100)) is True
    assert cache.lookup("k") == cache.entry("k") and cache.entry("k").read_bytes() == b"state" * 100
    assert cache.store("k", _writer(b"other")) is False  # there already: not rewritten
    assert cache.entry("k").read_bytes() == b"state" * 100
    # a flipped byte: detected, removed, a miss; the next store rebuilds it
    data = bytearray(cache.entry("k").read_bytes())
    data[37] ^= 0xFF
    cache.entry("k").write_bytes(bytes(data))
    assert cache.lookup("k") is None
    assert not cache.entry("k").exists() and not cache.has("k")
    assert any("does not match its digest" in m for m in logs)
    assert cache.store("k", _writer(b"state" * 100)) is True and cache.lookup("k") is not None
    # a truncated file: the same
    cache.entry("k").write_bytes(b"state")
    assert cache.lookup("k") is None and not cache.entry("k").exists()
    # a state file without its digest (a writer killed between the two): never trusted
    cache.entry("k2").write_bytes(b"half")
    assert cache.lookup("k2") is None


def test_lru_eviction_keeps_the_recently_used(tmp_path: Path) -> None:
    cache = PrefixCache(tmp_path / "c")
    assert cache.max_bytes == DEFAULT_MAX_BYTES
    entry = 1000 + 65  # the state and its digest line
    set_limit(cache.root, 3 * entry + 10)
    assert cache.max_bytes == 3 * entry + 10
    for i, key in enumerate(("a", "b", "c")):
        cache.store(key, _writer(bytes([i]) * 1000))
        _age(cache, key, 100 - i)  # a oldest, then b, then c
    assert cache.size() == 3 * entry
    assert cache.lookup("a") is not None  # a hit: a is now the most recently used
    assert cache.store("d", _writer(b"d" * 1000)) is True  # over the limit: b, the least recently used, goes
    assert [k for k in "abcd" if cache.has(k)] == ["a", "c", "d"]
    assert cache.size() <= cache.max_bytes
    # a store that finds its entry touches it too
    _age(cache, "c", 50)
    _age(cache, "d", 40)
    _age(cache, "a", 30)
    assert cache.store("c", _writer(b"x")) is False
    assert cache.store("e", _writer(b"e" * 1000)) is True
    assert [k for k in "acde" if cache.has(k)] == ["a", "c", "e"]
    # a limit smaller than one entry empties the cache, the new entry included
    set_limit(cache.root, 10)
    assert cache.store("f", _writer(b"f" * 1000)) is True
    assert cache.size() == 0 and not any(cache.has(k) for k in "acef")


def _store_in_process(root: str, start: float, out: str) -> None:
    time.sleep(max(0.0, start - time.time()))
    wrote = PrefixCache(Path(root)).store("same", _writer(b"z" * 200_000, delay=0.3))
    Path(out).write_text("wrote" if wrote else "found")


def test_many_processes_storing_one_entry_write_it_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start = time.time() + 0.5
    procs = [ctx.Process(target=_store_in_process, args=(str(tmp_path / "c"), start, str(tmp_path / f"r{i}")))
             for i in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = sorted((tmp_path / f"r{i}").read_text() for i in range(5))
    assert results == ["found"] * 4 + ["wrote"]
    cache = PrefixCache(tmp_path / "c")
    assert cache.lookup("same") is not None and cache.entry("same").read_bytes() == b"z" * 200_000
    assert not list(cache.root.glob(".*.tmp"))  # no temporary file left behind


def test_prefix_reuse_report_from_trials(tmp_path: Path) -> None:
    """``growsearch show`` counts cache hits and the training FLOPs they saved from the trials' metrics."""
    from growsearch.commands.show import command

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["minimize", "minimize"])
    recorded = [
        {"train_flops": 100.0, "train_flops_saved": 0.0, "prefix_epochs_reused": 0},
        {"train_flops": 200.0, "train_flops_saved": 50.0, "prefix_epochs_reused": 2},
        {"train_flops": 300.0, "train_flops_saved": 90.0, "prefix_epochs_reused": 3, "prefix_wait_s": 4.5},
    ]
    for i, m in enumerate(recorded):
        t = study.ask()
        TRIAL_METRICS.set(t, m)
        study.tell(t, [0.1 * i, 10.0 - i])
    t = study.ask()  # a failed trial does not count
    TRIAL_METRICS.set(t, {"train_flops": 1e9, "train_flops_saved": 1e9, "prefix_epochs_reused": 5})
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    assert trial_prefix_reuse(study.trials[1]) == {"epochs": 2, "train_flops": 50.0, "wait_s": 0.0}
    assert trial_prefix_reuse({}) is None
    expected = {"complete": 3, "hits": 2, "epochs_reused": 5, "train_flops": 600.0, "train_flops_saved": 140.0,
                "saved_fraction": pytest.approx(140.0 / 600.0), "wait_s": 4.5}
    assert prefix_reuse(study) == expected
    res = CliRunner().invoke(command, ["s", "--storage", url, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["prefix_cache"] == expected
    res = CliRunner().invoke(command, ["s", "--storage", url])
    assert res.exit_code == 0, res.output
    assert ("prefix cache: 2 of 3 trials started from a cached prefix, 5 epochs reused, 140 of 600 training FLOPs saved "
            "(23.3%); trials waited 4 s in all for prefixes others were training") in res.output


def test_cache_size_limit_is_a_study_setting(tmp_path: Path) -> None:
    from growsearch.errors import ConfigError
    from growsearch.search.study import load_study_config

    root = Path(__file__).resolve().parents[1]
    text = (root / "studies" / "quickstart.yaml").read_text()
    text = text.replace("../configs/", f"{root}/configs/").replace("../search_spaces/", f"{root}/search_spaces/")
    p = tmp_path / "study.yaml"
    p.write_text(text)
    assert load_study_config(p).execution.prefix_cache_max_gb == 10.0
    p.write_text(text.replace("retries: 2}", "retries: 2, prefix_cache_max_gb: 0.5}"))
    assert load_study_config(p).execution.prefix_cache_max_gb == 0.5
    p.write_text(text.replace("retries: 2}", "retries: 2, prefix_cache_max_gb: 0}"))
    with pytest.raises(ConfigError) as exc:
        load_study_config(p)
    assert "execution.prefix_cache_max_gb" in str(exc.value) and "study.yaml" in str(exc.value), str(exc.value)
