"""Claims on shared prefixes being trained: a starting trial waits for the prefix another live
trial is training instead of training the same epochs twice; a dead or stale claimant never
holds it up; waiting changes no result.

The claim bookkeeping is tested on files; the wait end to end with two real training processes
on the generated corpus (the tiny ResNet-18 of tests/test_prefix_tree.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from growsearch.train.loop import train
from growsearch.train.prefix_cache import DEFAULT_MAX_WAIT_S, PrefixCache, set_limit
from growsearch.train.prefix_claims import CLAIM_SUFFIX, STALE_S, PrefixClaims
from growsearch.train.resume import prefix_keys
from test_prefix_tree import comparable, make_config, quiet, schedules


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _foreign_claim(root: Path, key: str, *, host: str | None = None, pid: int | None = None, age_s: float = 0.0) -> Path:
    import socket

    root.mkdir(parents=True, exist_ok=True)
    f = root / (key + CLAIM_SUFFIX)
    f.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid if pid is not None else os.getppid(),
                             "time": time.time()}))
    t = time.time() - age_s
    os.utime(f, (t, t))
    return f


def test_claims_are_exclusive_released_and_refreshed(tmp_path: Path) -> None:
    a, b = PrefixClaims(tmp_path), PrefixClaims(tmp_path)
    b.pid = os.getppid()  # another live process on this host
    assert a.claim(["k1", "k2"]) == [] and a.mine == {"k1", "k2"}
    assert b.claim(["k2", "k3"]) == ["k2"] and b.mine == {"k3"}  # k2 is a's
    assert b.holder("k1") is not None and a.holder("k3") is not None
    assert a.holder("k1") is None  # one's own claim holds nobody up
    old = time.time() - 30
    os.utime(tmp_path / ("k2" + CLAIM_SUFFIX), (old, old))
    a.refresh()
    assert (tmp_path / ("k2" + CLAIM_SUFFIX)).stat().st_mtime > old + 20
    assert a._thread is not None and a._thread.is_alive()  # refreshes them while the run trains
    a.release("k1")
    assert not (tmp_path / ("k1" + CLAIM_SUFFIX)).exists() and b.holder("k1") is None
    a.release_all()
    assert a.mine == set() and a._thread is None and not (tmp_path / ("k2" + CLAIM_SUFFIX)).exists()
    a.refresh()  # nothing of a's comes back
    assert b.claim(["k2"]) == [] and b.mine == {"k2", "k3"}
    b.release_all()
    assert not list(tmp_path.glob("*" + CLAIM_SUFFIX))


def test_dead_stale_and_unreadable_claims_are_removed(tmp_path: Path) -> None:
    c = PrefixClaims(tmp_path)
    dead = _foreign_claim(tmp_path, "dead", pid=_dead_pid())
    assert c.holder("dead") is None and not dead.exists()
    far_fresh = _foreign_claim(tmp_path, "far", host="elsewhere", pid=1, age_s=10)
    assert c.holder("far") is not None and far_fresh.exists()  # another host: judged by its age
    far_stale = _foreign_claim(tmp_path, "old", host="elsewhere", pid=1, age_s=STALE_S + 5)
    assert c.holder("old") is None and not far_stale.exists()
    here_stale = _foreign_claim(tmp_path, "quiet", age_s=STALE_S + 5)  # a live pid, but no refresh for a minute
    assert c.holder("quiet") is None and not here_stale.exists()
    (tmp_path / ("junk" + CLAIM_SUFFIX)).write_text("{half")
    assert c.holder("junk") is not None  # a claim being written: fresh, so alive for now
    os.utime(tmp_path / ("junk" + CLAIM_SUFFIX), (0, 0))
    assert c.holder("junk") is None
    _foreign_claim(tmp_path, "gone", pid=_dead_pid())
    assert c.claim(["gone"]) == [] and c.mine == {"gone"}  # a dead claimant's key is taken over


def test_wait_until_the_claimed_entry_appears_or_the_claimant_goes(tmp_path: Path) -> None:
    keys = {1: "e1", 2: "e2", 3: "e3"}
    have = {"depth": 0}
    claim = _foreign_claim(tmp_path, "e2")  # the parent process: alive
    c = PrefixClaims(tmp_path)
    assert c.wait_target(keys, 0) == 2 and c.wait_target(keys, 2) is None
    sleeps: list[float] = []

    def sleep(s: float) -> None:  # the claimant stores epoch 2 after three looks
        sleeps.append(s)
        if len(sleeps) == 3:
            have["depth"] = 2
            claim.unlink()

    assert c.wait(keys, lambda: have["depth"], 60.0, sleep=sleep) >= 0.0 and len(sleeps) == 3
    # the claimant dies without storing it: the wait ends at the next look
    _foreign_claim(tmp_path, "e3", pid=_dead_pid())
    assert c.wait(keys, lambda: 2, 60.0, sleep=lambda s: pytest.fail("waited for a dead claimant")) == 0.0
    # a live claimant that takes too long: the wait ends at max_wait_s
    _foreign_claim(tmp_path, "e3")
    assert c.wait(keys, lambda: 2, 0.0, sleep=lambda s: pytest.fail("waited past max_wait_s")) == pytest.approx(0.0, abs=0.5)


def test_max_wait_is_recorded_in_the_cache_folder(tmp_path: Path) -> None:
    cache = PrefixCache(tmp_path / "c")
    assert cache.max_wait_s == DEFAULT_MAX_WAIT_S
    set_limit(cache.root, 2**30, 7.5)
    assert cache.max_wait_s == 7.5 and cache.max_bytes == 2**30


_PRODUCER = """
import json, sys, time
from pathlib import Path
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig
from growsearch.train.loop import train
cfg = TrainConfig.model_validate_json(Path(sys.argv[1]).read_text())
sched = GrowthSchedule.from_dict(json.loads(Path(sys.argv[2]).read_text()))
train(cfg, sched, out_dir=sys.argv[3], resume=False, prefix_cache=sys.argv[4],
      on_epoch=lambda record, ckpt: time.sleep(1.5), log=lambda m: None)
"""


@pytest.mark.slow
def test_a_trial_waits_for_the_prefix_a_running_trial_trains(corpus: Path, tmp_path: Path) -> None:
    """Plasticity trains (slowly) in another process; dropin, which shares its grown epochs
    1-2, starts meanwhile, waits, and starts from the state before epoch 3 that plasticity
    wrote: the same result as training everything, and no epoch of the shared prefix trained twice."""
    cfg = make_config(corpus, 4, "any")
    scheds = schedules("all", "fresh")
    plain = tmp_path / "plain"
    train(cfg, scheds["dropin"], out_dir=plain, resume=False, log=quiet)
    cache = tmp_path / "cache"
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "sched.json").write_text(json.dumps(scheds["plasticity"].to_dict()))
    producer = subprocess.Popen([sys.executable, "-c", _PRODUCER, str(tmp_path / "cfg.json"), str(tmp_path / "sched.json"),
                                 str(tmp_path / "producer"), str(cache)], cwd=Path(__file__).resolve().parents[1])
    try:
        keys = prefix_keys(cfg, scheds["plasticity"])
        deadline = time.time() + 300
        while not (cache / (keys[3] + CLAIM_SUFFIX)).exists():  # plasticity started and claimed what it will write
            assert producer.poll() is None and time.time() < deadline, "the producer never claimed its prefixes"
            time.sleep(0.05)
        logs: list[str] = []
        r = train(cfg, scheds["dropin"], out_dir=tmp_path / "waiter", resume=False, prefix_cache=cache, log=logs.append)
        assert producer.wait(timeout=300) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
    assert r.metrics["prefix_epochs_reused"] == 3 and r.metrics["prefix_wait_s"] > 0
    assert any("waiting for the shared prefix at epoch 3" in m for m in logs), logs
    assert comparable(tmp_path / "waiter") == comparable(plain)
    assert not list(cache.glob("*" + CLAIM_SUFFIX))  # both runs released their claims


@pytest.mark.slow
def test_no_wait_for_a_dead_claimant_or_when_waiting_is_off(corpus: Path, tmp_path: Path) -> None:
    cfg = make_config(corpus, 3, "any")
    sched = schedules("all", "fresh")["dropin"]
    cache = tmp_path / "cache"
    keys = prefix_keys(cfg, sched)
    _foreign_claim(cache, keys[2], pid=_dead_pid())
    r = train(cfg, sched, out_dir=tmp_path / "a", resume=False, prefix_cache=cache, log=quiet)
    assert r.metrics["prefix_wait_s"] == 0 and r.metrics["prefix_epochs_reused"] == 0
    other = schedules("new_only", "carry")["dropin"]  # shares only epoch 1 (the baseline) with the cached run
    set_limit(cache, 2**30, 0.0)
    _foreign_claim(cache, prefix_keys(cfg, other)[2])  # a live claimant, but waiting is off
    r2 = train(cfg, other, out_dir=tmp_path / "b", resume=False, prefix_cache=cache, log=quiet)
    assert r2.metrics["prefix_wait_s"] < 1.0 and r2.metrics["prefix_epochs_reused"] == 1
