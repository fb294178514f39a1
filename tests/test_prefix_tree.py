"""The prefix tree on the real generated corpus: runs that start from a shared prefix of
another schedule (the baseline epochs and grown phases) end bit-identical to runs that
trained everything, for dropin, plasticity (grow + shrink) and two-growth schedules, under
the freeze policies and optimizer-state modes and both best-checkpoint rules; a corrupt entry
is ignored and rebuilt, and an evicted cache still gives the same results.

Every run is tiny: ResNet-18 ``tiny``, half-second clips, 1 batch of 8 per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from growsearch.backbones.checkpoint import load_model
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig
from growsearch.train.loop import train
from growsearch.train.prefix_cache import PrefixCache, set_limit
from growsearch.train.resume import prefix_keys

TIMING = ("wall_s", "samples_per_s", "peak_mem_mb")


def make_config(corpus: Path, epochs: int, rule: str) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": 11,
        "data": {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny", "clip_samples": 8000},
        "model": {"backbone": "resnet18", "preset": "tiny"},
        "training": {"epochs": epochs, "batch_size": 8, "lr": 1e-3, "max_batches_per_epoch": 1, "device": "cpu",
                     "best_checkpoint": rule, "scheduler": "plateau"},
    })


def quiet(_: str) -> None:
    pass


def comparable(out_dir: Path) -> dict[str, Any]:
    """metrics.json without wall-time fields and the cache bookkeeping, plus the eval scores
    and the best model's weights."""
    m = json.loads((out_dir / "metrics.json").read_text())
    keys = ("status", "dev_eer", "eval_eer", "min_tdcf", "params", "flops", "best_epoch", "train_flops",
            "train_flops_scratch_final", "schedule")
    d = {k: m[k] for k in keys}
    d["epochs"] = [{k: v for k, v in r.items() if k not in TIMING} for r in m["epochs"]]
    d["scores"] = (out_dir / "scores.txt").read_text()
    best, _ = load_model(out_dir / "best_model.pt")
    d["weights"] = {k: v.tolist() for k, v in best.state_dict().items()}
    return d


def schedules(freeze: str, mode: str) -> dict[str, GrowthSchedule]:
    """Three schedules that agree up to epoch 2: the same growth at epoch 1, then a shrink at
    epoch 3 (plasticity), nothing (dropin), or a second growth at epoch 2."""
    grow = {"point": "stage2", "epoch": 1, "neurons": 4, "freeze": freeze, "optimizer_state": mode}
    return {
        "plasticity": GrowthSchedule.of([grow, {"point": "stage2", "epoch": 3, "action": "shrink", "optimizer_state": mode}]),
        "dropin": GrowthSchedule.of([grow]),
        "two_growths": GrowthSchedule.of([grow, {"point": "stage3", "epoch": 2, "neurons": 4, "freeze": freeze,
                                                 "optimizer_state": mode}]),
    }


@pytest.mark.slow
@pytest.mark.parametrize(("freeze", "mode", "rule"), [("new_only", "carry", "last_phase"), ("all", "fresh", "any"),
                                                      ("new_units", "carry", "any")])
def test_prefix_tree_gives_identical_results(freeze: str, mode: str, rule: str, corpus: Path, tmp_path: Path) -> None:
    cfg = make_config(corpus, 4, rule)
    scheds = schedules(freeze, mode)
    for name, s in scheds.items():
        train(cfg, s, out_dir=tmp_path / "plain" / name, resume=False, log=quiet)
    cache = tmp_path / "cache"
    reused = {}
    for name, s in scheds.items():  # plasticity first: it writes the states before epochs 1, 2 and 3
        r = train(cfg, s, out_dir=tmp_path / "cached" / name, resume=False, prefix_cache=cache, log=quiet)
        reused[name] = r.metrics["prefix_epochs_reused"]
        assert r.metrics["train_flops_saved"] == pytest.approx(sum(e["train_flops_epoch"] for e in r.metrics["epochs"][:reused[name]]))
    # dropin loads the state after the grown epochs 1-2 that plasticity trained; two_growths the one after epoch 1
    assert reused == {"plasticity": 0, "dropin": 3, "two_growths": 2}
    for name in scheds:
        assert comparable(tmp_path / "cached" / name) == comparable(tmp_path / "plain" / name), name
    keys = prefix_keys(cfg, scheds["plasticity"])
    _, extra = load_model(PrefixCache(cache).entry(keys[3]))
    assert sorted(extra["window_best"]) == [0, 1] and extra["best"] is None  # a window per phase start, no writer's best


def test_corrupt_entry_is_rebuilt_and_eviction_keeps_results(corpus: Path, tmp_path: Path) -> None:
    cfg = make_config(corpus, 3, "last_phase")
    sched = schedules("all", "fresh")["dropin"]
    cache = PrefixCache(tmp_path / "cache")
    first = train(cfg, sched, out_dir=tmp_path / "a", resume=False, prefix_cache=cache.root, log=quiet)
    assert first.metrics["prefix_epochs_reused"] == 0
    keys = prefix_keys(cfg, sched)
    assert all(cache.has(k) for k in keys.values())
    # the longest entry corrupted on disk: ignored (never loaded), the run starts from the shorter one
    entry = cache.entry(keys[2])
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x55
    entry.write_bytes(bytes(data))
    logs: list[str] = []
    second = train(cfg, sched, out_dir=tmp_path / "b", resume=False, prefix_cache=cache.root, log=logs.append)
    assert second.metrics["prefix_epochs_reused"] == 1
    assert any("does not match its digest" in m for m in logs)
    assert comparable(tmp_path / "b") == comparable(tmp_path / "a")
    assert cache.lookup(keys[2]) is not None  # rebuilt by the run that trained that far
    # a cache whose limit is below one entry: every entry is evicted once written, results unchanged
    small = PrefixCache(tmp_path / "small")
    set_limit(small.root, 1000)
    logs.clear()
    third = train(cfg, sched, out_dir=tmp_path / "c", resume=False, prefix_cache=small.root, log=logs.append)
    assert third.metrics["prefix_epochs_reused"] == 0
    assert small.size() == 0 and sum("evicted 1 least recently used entry" in m for m in logs) == 2
    assert comparable(tmp_path / "c") == comparable(tmp_path / "a")


@pytest.mark.slow
def test_checkpoint_of_state_format_2_resumes_without_writing_prefixes(corpus: Path, tmp_path: Path) -> None:
    """A resumable checkpoint written before window_best (format 2: ``best`` + ``prefix_best``)
    still resumes to the same result; its incomplete windows never become a prefix entry."""
    import torch

    cfg = make_config(corpus, 3, "last_phase")
    sched = schedules("all", "fresh")["dropin"]
    full = train(cfg, sched, out_dir=tmp_path / "full", resume=False, log=quiet)

    class Stop(Exception):
        pass

    def stop(record: dict[str, Any], _ckpt: Path) -> None:
        if record["epoch"] == 0:
            raise Stop

    with pytest.raises(Stop):
        train(cfg, sched, out_dir=tmp_path / "old", resume=False, on_epoch=stop, log=quiet)
    state = tmp_path / "old" / "checkpoint" / "state.pt"
    blob = torch.load(state, weights_only=True)
    wb = blob["extra"].pop("window_best")
    blob["extra"].update(state_format=2, prefix_best=wb.get(0), best=wb.get(1))
    torch.save(blob, state)
    cache = tmp_path / "cache"
    resumed = train(cfg, sched, out_dir=tmp_path / "old", prefix_cache=cache, log=quiet)
    assert resumed.metrics["best_epoch"] == full.metrics["best_epoch"]
    assert comparable(tmp_path / "old") == comparable(tmp_path / "full")
    assert PrefixCache(cache).size() == 0  # the state before epoch 2 would have been written by a new run
