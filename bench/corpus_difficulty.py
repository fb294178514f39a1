"""Benchmark: is the generated corpus's ``bench`` profile a task where model width matters?

For each backbone (the tiny LC-GRNN and the tiny ResNet18 presets, ``presets/<family>/tiny/``)
it trains, on the generated corpus of ``--size`` (default ``bench``) and for each seed, the
preset's model from scratch at two widths, with no growth:

- ``baseline``: the preset's widths (LC-GRNN 8/8/4/4, ResNet18 ``tiny_authors`` 4/4/4/16);
- ``wide``: the widths the preset's dropin schedules grow to (LC-GRNN GRU layer 2 +8:
  8/16/4/4; ResNet18 stages 2 and 3 +8: 4/12/12/16), trained from scratch.

Both are read from the preset (:func:`preset_widths`), so they follow it when it changes.

The training config is the preset's (loss, optimizer, lr, batch size, 1 s clips) with
``--epochs`` epochs; ``--lr`` (for all backbones or per backbone, ``lcgrnn=3e-3``) and
``--batch-size`` change the recipe for calibration. Per backbone it prints, over the seeds:

- ``baseline_dev_eer_mean`` and ``wide_dev_eer_mean``: mean dev EER (of the best dev-EER
  epoch, as the studies and the paper-preset table use it);
- ``dev_eer_sd_max``: the larger of the two seed-to-seed standard deviations;
- ``epoch_s``: mean wall time of one epoch (training + dev scoring) of the baseline, with
  ``--threads`` torch threads (uncached data path unless a feature cache is in use);
- ``baseline_eval_eer_mean``, ``wide_eval_eer_mean`` and the per-seed numbers.

``targets`` says whether each backbone meets the profile's targets (baseline dev EER in
[0.10, 0.35], wide at least 0.05 below, sd at most 0.02). Prints one JSON document on
stdout; progress goes to stderr. These are results on a synthetic corpus, not
deepfake-detection results. Usage::

    .venv/bin/python bench/corpus_difficulty.py --jobs 2                 # 2 backbones x 2 widths x 3 seeds
    .venv/bin/python bench/corpus_difficulty.py --backbones lcgrnn --seeds 0 --epochs 4
    .venv/bin/python bench/corpus_difficulty.py --seeds 0 --lr resnet18=1e-3 lcgrnn=3e-3 --jobs 2

Calibration (``bench/results/CALIBRATION.md``): on profile version 2 and seeds 0-2 the tiny
LC-GRNN meets the range and gap targets with its seed sd on the edge (0.02002); the tiny
ResNet18 (``tiny_authors`` 4/4/4/16, lr 3e-3) meets all three (gap 0.061, sd 0.014), but its sd
is 0.089 on seeds 3-5. The gaps come mostly from the narrow model learning more slowly, not
from a capacity limit: a recipe that trains further (a higher lr, a smaller batch) closes them.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from growsearch.backbones import backbone_presets
from growsearch.backbones.registry import get_entry
from growsearch.data import synthetic_bench
from growsearch.data.synthetic import ensure_corpus
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import load_train_config
from growsearch.train.loop import train

PRESETS = Path(__file__).resolve().parent.parent / "presets"
#: the model option that holds a family's per-layer widths
WIDTH_OPTION = {"lcgrnn": "hidden", "resnet18": "widths"}
#: the schedule whose growth gives the ``wide`` width (``dropin_frozen`` grows the same points)
WIDE_SCHEDULE = "dropin_unfrozen.yaml"


def preset_widths(family: str) -> dict[str, dict[str, list[int]]]:
    """Model options of the two widths of ``presets/<family>/tiny``: the preset's, and those its dropin schedule grows to.

    Read from the preset and the schedule file, so the benchmark follows them when they change.
    A growth point ``<name><i>`` (``stage2``, ``gru2``) is layer ``i`` of the width list.
    """
    folder = PRESETS / family / "tiny"
    cfg = load_train_config(folder / "config.yaml")
    key = WIDTH_OPTION[family]
    opts = {**backbone_presets(cfg.model.backbone)[cfg.model.preset or get_entry(cfg.model.backbone).default_preset],
            **cfg.model.options}
    base = [int(w) for w in opts[key]]
    wide = list(base)
    for point, units in GrowthSchedule.load(folder / WIDE_SCHEDULE).total_grown().items():
        wide[int(point[-1]) - 1] += units
    return {"baseline": {key: base}, "wide": {key: wide}}


#: model options of the two widths per preset family
WIDTHS: dict[str, dict[str, dict[str, list[int]]]] = {fam: preset_widths(fam) for fam in WIDTH_OPTION}
TARGET_BASELINE = (0.10, 0.35)
TARGET_GAP = 0.05
TARGET_SD = 0.02


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_one(family: str, width: str, seed: int, epochs: int, root: Path, size: str, synth_seed: int,
            out: Path, threads: int, lr: float | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """Train one (backbone, width, seed) from scratch and return its row."""
    torch.set_num_threads(threads)
    cfg = load_train_config(PRESETS / family / "tiny" / "config.yaml").with_overrides(seed=seed)
    data = cfg.data.model_copy(update={"root": root, "synth_size": size, "synth_seed": synth_seed})
    model = cfg.model.model_copy(update={"options": {**cfg.model.options, **WIDTHS[family][width]}})
    recipe: dict[str, Any] = {"epochs": epochs}
    if lr is not None:
        recipe["lr"] = lr
    if batch_size is not None:
        recipe["batch_size"] = batch_size
    training = cfg.training.model_copy(update=recipe)
    cfg = cfg.model_copy(update={"data": data, "model": model, "training": training})
    m = train(cfg, None, out_dir=out, resume=False, log=lambda _m: None).metrics
    return {
        "backbone": family, "width": width, "seed": seed, "dev_eer": m["dev_eer"], "eval_eer": m["eval_eer"],
        "best_epoch": m["best_epoch"], "params": m["params"],
        "dev_eer_per_epoch": [r["dev_eer"] for r in m["epochs"]],
        "epoch_s": statistics.fmean(r["wall_s"] for r in m["epochs"]),
        "samples_per_s": statistics.fmean(r["samples_per_s"] for r in m["epochs"]),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backbone: the means, the worst seed-to-seed sd, the epoch time and whether the targets are met."""
    out: dict[str, dict[str, Any]] = {}
    for fam in sorted({r["backbone"] for r in rows}):
        def pick(width: str, key: str, fam: str = fam) -> list[float]:
            return [r[key] for r in rows if r["backbone"] == fam and r["width"] == width]

        def sd(xs: list[float]) -> float:
            return float(statistics.stdev(xs)) if len(xs) > 1 else 0.0

        base, wide = pick("baseline", "dev_eer"), pick("wide", "dev_eer")
        s: dict[str, Any] = {
            "baseline_dev_eer_mean": statistics.fmean(base) if base else None,
            "wide_dev_eer_mean": statistics.fmean(wide) if wide else None,
            "dev_eer_sd_max": max(sd(base), sd(wide)),
            "epoch_s": statistics.fmean(pick("baseline", "epoch_s") or pick("wide", "epoch_s")),
            "baseline_dev_eer_sd": sd(base), "wide_dev_eer_sd": sd(wide),
            "baseline_eval_eer_mean": statistics.fmean(pick("baseline", "eval_eer")) if base else None,
            "wide_eval_eer_mean": statistics.fmean(pick("wide", "eval_eer")) if wide else None,
            "baseline_params": (pick("baseline", "params") or [None])[0], "wide_params": (pick("wide", "params") or [None])[0],
        }
        if base and wide:
            b, w = s["baseline_dev_eer_mean"], s["wide_dev_eer_mean"]
            s["targets"] = {
                "baseline_in_range": TARGET_BASELINE[0] <= b <= TARGET_BASELINE[1],
                "wide_gap": b - w >= TARGET_GAP,
                "sd": s["dev_eer_sd_max"] <= TARGET_SD,
            }
        out[fam] = s
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", nargs="*", default=list(WIDTHS), choices=list(WIDTHS))
    ap.add_argument("--widths", nargs="*", default=["baseline", "wide"], choices=["baseline", "wide"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="training seeds")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--size", default="bench", help="generated-corpus size (default: bench)")
    ap.add_argument("--synth-seed", type=int, default=0, help="seed of the generated corpus")
    ap.add_argument("--root", type=Path, default=None, help="corpus folder (default: data/synth-<size>)")
    ap.add_argument("--strength", type=float, default=None,
                    help="calibration only: generate the bench profile with this artefact strength (default: the "
                         "profile's own); give a new --root, the corpus's marker records the strength")
    ap.add_argument("--out", type=Path, default=Path("runs/corpus_difficulty"), help="run folders go here")
    ap.add_argument("--lr", nargs="*", default=[], metavar="[BACKBONE=]LR",
                    help="learning rate, for all backbones or per backbone (e.g. lcgrnn=3e-3); default: the preset's")
    ap.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (separate processes)")
    args = ap.parse_args(argv)
    lrs: dict[str, float] = {}
    for item in args.lr:
        fam, _, value = item.rpartition("=")
        try:
            lr = float(value)
        except ValueError:
            ap.error(f"--lr {item!r}: not a number")
        if fam and fam not in WIDTHS:
            ap.error(f"--lr {item!r}: unknown backbone {fam!r}; valid: {', '.join(WIDTHS)}")
        for f in [fam] if fam else list(WIDTHS):
            lrs[f] = lr
    root = args.root or Path(f"data/synth-{args.size}")
    t_all = time.perf_counter()
    if args.strength is not None:
        synthetic_bench.STRENGTH = args.strength
    t0 = time.perf_counter()
    generated = ensure_corpus(root, seed=args.synth_seed, size=args.size)
    gen_s = time.perf_counter() - t0
    tasks = [(fam, w, seed, args.epochs, root, args.size, args.synth_seed, args.out / fam / w / f"seed{seed}", args.threads,
              lrs.get(fam), args.batch_size)
             for fam in sorted(args.backbones, key=lambda f: f != "resnet18")  # the slow backbone first
             for seed in args.seeds for w in args.widths]
    rows: list[dict[str, Any]] = []
    with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, *t): i for i, t in enumerate(tasks)}
        for fut in cf.as_completed(futures):
            row = {**fut.result(), "_i": futures[fut]}
            rows.append(row)
            _log(f"{row['backbone']}/{row['width']} seed {row['seed']}: dev EER {row['dev_eer']:.3f} eval EER "
                 f"{row['eval_eer']:.3f} (best epoch {row['best_epoch']}) {row['epoch_s']:.1f} s/epoch "
                 f"({len(rows)}/{len(tasks)})")
    rows.sort(key=lambda r: r.pop("_i"))
    doc = {
        "benchmark": "corpus_difficulty",
        "corpus": {"size": args.size, "synth_seed": args.synth_seed, "root": str(root), "strength": synthetic_bench.STRENGTH,
                   "version": synthetic_bench.VERSION, "level_db": list(synthetic_bench.LEVEL_DB),
                   "tilt": list(synthetic_bench.TILT), "cue_p": synthetic_bench.CUE_P,
                   "generated_s": gen_s if generated else None},
        "epochs": args.epochs, "seeds": args.seeds, "lr": lrs or None, "batch_size": args.batch_size,
        "targets": {"baseline_dev_eer": list(TARGET_BASELINE), "wide_gap_min": TARGET_GAP, "dev_eer_sd_max": TARGET_SD},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                    "jobs": args.jobs, "cpu": platform.processor() or platform.machine()},
        "total_s": time.perf_counter() - t_all,
        **summarise(rows),
        "runs": rows,
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
