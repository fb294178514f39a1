"""Dropin and plasticity vs training the final-size model from scratch, on the generated corpus.

Variants (same data, seed, epochs E and settings; growth at epoch E/3 by default):

- ``scratch_final``: the grown architecture trained from scratch for E epochs (the growth
  event at epoch 0);
- ``baseline``: the base model, no growth;
- ``dropin_frozen``: baseline, then grow and train only the new units (``new_only``, fresh Adam);
- ``dropin_unfrozen``: baseline, then grow and train everything (fresh Adam);
- ``plasticity``: baseline, grow + train all, shrink back at 2E/3 (appended units), train again.

The checkpoint kept is the best dev EER (within the last phase for plasticity), so a dropin
run whose best epoch came before the growth reports the baseline's size.
For every variant and seed: eval EER, dev EER, parameters, inference FLOPs and cumulative
training FLOPs (``train_flops``, also relative to ``scratch_final``). The dropin and plasticity
runs share the baseline prefix through the prefix cache, as a search would. EERs on the
generated corpus say whether the machinery works, not how the method does on real data.
Prints JSON on stdout; progress on stderr.

    python bench/dropin_efficiency.py                  # ~95 s CPU (8.5 min wall at load 12 on 2 cores)
    python bench/dropin_efficiency.py --backbone lcgrnn --preset tiny --point gru2 --seeds 0 1 2 --size small
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from growsearch.backbones import create_backbone
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig
from growsearch.train.loop import train


def schedules(point: str, neurons: int, epochs: int, grow_at: int) -> dict[str, GrowthSchedule]:
    shrink_at = grow_at + (epochs - grow_at) // 2
    g = {"point": point, "neurons": neurons}
    return {
        "scratch_final": GrowthSchedule.of([{**g, "epoch": 0}], label="scratch-final"),
        "baseline": GrowthSchedule.of([], label="baseline"),
        "dropin_frozen": GrowthSchedule.of([{**g, "epoch": grow_at, "freeze": "new_only"}], label="dropin-frozen"),
        "dropin_unfrozen": GrowthSchedule.of([{**g, "epoch": grow_at}], label="dropin-unfrozen"),
        "plasticity": GrowthSchedule.of([{**g, "epoch": grow_at},
                                         {"point": point, "epoch": shrink_at, "action": "shrink"}], label="plasticity"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--point", default="stage2")
    ap.add_argument("--neurons", type=int, default=None, help="default: the point's base width (doubling)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--grow-at", type=int, default=None, help="default: epochs // 3")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--size", default="tiny", help="synthetic corpus size (tiny: 24/12/12 utterances)")
    ap.add_argument("--clip-seconds", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from growsearch.data.synthetic import ensure_corpus

    base = create_backbone(args.backbone, args.preset)
    gp = base.growth_points()[args.point]
    neurons = args.neurons or gp.base_width
    grow_at = args.grow_at if args.grow_at is not None else max(1, args.epochs // 3)
    scheds = schedules(args.point, neurons, args.epochs, grow_at)
    tmp = Path(tempfile.mkdtemp(prefix="gs-dropin-"))
    root = tmp / "synth"
    ensure_corpus(root, seed=0, size=args.size)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in scheds}
    t_start = time.perf_counter()
    for seed in args.seeds:
        cfg = TrainConfig.model_validate({
            "seed": seed,
            "data": {"dataset": "synthetic", "root": str(root), "synth_size": args.size,
                     "clip_samples": int(args.clip_seconds * 16000)},
            "model": {"backbone": args.backbone, "preset": args.preset},
            "training": {"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "device": "cpu",
                         "loss": "hinge" if args.backbone == "lcgrnn" else "ce"},
        })
        for name, sched in scheds.items():
            t0 = time.perf_counter()
            r = train(cfg, sched, out_dir=tmp / f"{name}-{seed}", resume=False, prefix_cache=tmp / "prefix",
                      log=lambda s: None)
            m = r.metrics
            runs[name].append({"seed": seed, "eval_eer": m["eval_eer"], "dev_eer": m["dev_eer"], "params": m["params"],
                               "flops": m["flops"], "train_flops": m["train_flops"], "best_epoch": m["best_epoch"],
                               "prefix_epochs_reused": m["prefix_epochs_reused"], "wall_s": time.perf_counter() - t0})
            print(f"seed {seed} {name}: eval_eer {m['eval_eer']:.4f} train_flops {m['train_flops']:.3g} "
                  f"params {m['params']} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    scratch = statistics.mean(r["train_flops"] for r in runs["scratch_final"])
    summary = {}
    for name, rs in runs.items():
        eers = [r["eval_eer"] for r in rs]
        tf = statistics.mean(r["train_flops"] for r in rs)
        summary[name] = {"eval_eer_mean": statistics.mean(eers),
                         "eval_eer_std": statistics.stdev(eers) if len(eers) > 1 else 0.0,
                         "train_flops_mean": tf, "train_flops_vs_scratch_final": tf / scratch,
                         "params": rs[0]["params"], "flops": rs[0]["flops"], "runs": rs}
    print(json.dumps({"backbone": args.backbone, "preset": args.preset, "point": args.point, "neurons": neurons,
                      "epochs": args.epochs, "grow_at": grow_at, "seeds": args.seeds, "corpus": f"synthetic/{args.size}",
                      "clip_seconds": args.clip_seconds, "wall_s": time.perf_counter() - t_start,
                      "variants": summary}, indent=2))


if __name__ == "__main__":
    main()
