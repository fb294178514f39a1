"""Training throughput: growsearch's loop vs a plain PyTorch loop over the same model and data.

For each backbone and preset, both loops train 2 epochs of ``--batches`` batches on the
generated corpus (``ClipDataset`` from ``build_splits``, same batch size, Adam, cross-entropy)
and the second (warm) epoch's samples/s is taken; after one discarded warm-up pair, the pair
is repeated ``--repeats`` times interleaved and the median kept. On a shared machine the
wall-clock rates swing by 2x between runs: use ``--threads 1`` and several repeats. growsearch's number is its per-epoch ``samples_per_s``
(the training batches only, no evaluation). Prints JSON on stdout; progress on stderr.

    python bench/train_throughput.py                       # tiny of every backbone (~1 min)
    python bench/train_throughput.py --presets tiny small  # + small (wav2vec2 small: minutes)
    python bench/train_throughput.py --backbones resnet18 --presets tiny --batches 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from growsearch.backbones import backbone_presets, create_backbone, list_backbones
from growsearch.data.splits import build_splits
from growsearch.train.config import TrainConfig
from growsearch.train.evaluate import collate
from growsearch.train.loop import train


def config(root: Path, backbone: str, preset: str, args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": 0,
        "data": {"dataset": "synthetic", "root": str(root), "synth_size": args.size,
                 "clip_samples": int(args.clip_seconds * 16000)},
        "model": {"backbone": backbone, "preset": preset},
        "training": {"epochs": 2, "batch_size": args.batch, "lr": 1e-4, "max_batches_per_epoch": args.batches,
                     "max_eval_batches": 1, "device": "cpu"},
    })


def growsearch_loop(cfg: TrainConfig, out: Path) -> float:
    r = train(cfg, out_dir=out, resume=False, log=lambda s: None)
    return float(r.metrics["epochs"][1]["samples_per_s"])


def plain_loop(cfg: TrainConfig) -> float:
    """The same model, data, batch size and optimizer, with nothing else."""
    torch.manual_seed(0)
    model = create_backbone(cfg.model.backbone, cfg.model.preset)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.training.lr)
    splits = build_splits(cfg.data, cfg.seed)
    loader = torch.utils.data.DataLoader(splits.train, batch_size=cfg.training.batch_size, shuffle=True, collate_fn=collate)
    rate = 0.0
    for epoch in range(2):
        splits.train.set_epoch(epoch)
        model.train()
        n, t0 = 0, time.perf_counter()
        for i, (wave, label, _, _) in enumerate(loader):
            if i >= cfg.training.max_batches_per_epoch:
                break
            loss = torch.nn.functional.cross_entropy(model(wave), label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += wave.shape[0]
        rate = n / (time.perf_counter() - t0)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="*", default=None, help="default: all registered")
    ap.add_argument("--presets", nargs="*", default=["tiny"])
    ap.add_argument("--batches", type=int, default=12, help="batches per epoch")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clip-seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="small", help="synthetic corpus size (tiny has only 3 batches of 8)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from growsearch.data.synthetic import ensure_corpus

    tmp = Path(tempfile.mkdtemp(prefix="gs-throughput-"))
    root = tmp / "synth"
    ensure_corpus(root, seed=0, size=args.size)
    rows = []
    for backbone in args.backbones or list_backbones():
        for preset in args.presets:
            if preset not in backbone_presets(backbone):
                continue
            cfg = config(root, backbone, preset, args)
            gs, plain = [], []
            growsearch_loop(cfg, tmp / f"{backbone}-{preset}-warmup")
            plain_loop(cfg)
            for r in range(args.repeats):
                gs.append(growsearch_loop(cfg, tmp / f"{backbone}-{preset}-{r}"))
                plain.append(plain_loop(cfg))
            row = {"backbone": backbone, "preset": preset, "growsearch_samples_per_s": statistics.median(gs),
                   "plain_samples_per_s": statistics.median(plain),
                   "ratio": statistics.median(gs) / statistics.median(plain), "runs": {"growsearch": gs, "plain": plain}}
            print(f"{backbone}/{preset}: growsearch {row['growsearch_samples_per_s']:.1f} plain "
                  f"{row['plain_samples_per_s']:.1f} samples/s ratio {row['ratio']:.3f}", file=sys.stderr)
            rows.append(row)
    print(json.dumps({"batch": args.batch, "batches_per_epoch": args.batches, "clip_seconds": args.clip_seconds,
                      "threads": args.threads, "device": "cpu", "torch": torch.__version__, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
