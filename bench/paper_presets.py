"""Benchmark: every paper preset's variants (baseline, dropin, plasticity, LoRA) on the generated corpus.

For each preset family under ``presets/`` (``resnet18``, ``lcgrnn``, ``wav2vec2_base``,
``wav2vec2_small``) it trains the family's *tiny* variant (``presets/<family>/tiny/``:
tiny backbone, generated corpus ``synthetic``/``tiny``: 24/12/12 utterances, 1 s clips) once per schedule file and
seed with :func:`growsearch.train.loop.train`, and reports per variant, over the seeds:

- ``eval_eer`` and ``dev_eer`` (mean and standard deviation; the best dev-EER checkpoint, of
  the last phase for plasticity),
- ``params`` (total, of the kept best-dev-EER model, which for a dropin run can be a
  checkpoint from before the growth), ``params_last`` (total in the last epoch) and
  ``trainable_params`` (trainable entries in the last epoch: what the frozen regime trains),
- ``flops`` (inference FLOPs per second of audio) and ``train_flops`` (the run's training
  FLOPs: forward + backward x samples seen, summed over epochs as the model grew),
- ``wall_s`` (training + evaluation wall time of the run, on this machine).

These are results on the generated corpus, with tiny models and a few epochs: they check that
the presets run end to end and show the cost side of each variant; they say nothing about
the published EERs on ASVspoof or FakeOrReal.

Prints one JSON document on stdout (``runs`` and ``summary``); the Markdown table goes to
stderr and to ``--markdown``. Usage::

    .venv/bin/python bench/paper_presets.py --jobs 4               # 4 families, 3 seeds
    .venv/bin/python bench/paper_presets.py --families lcgrnn --seeds 0 1
    .venv/bin/python bench/paper_presets.py --size full            # needs the real corpora
    .venv/bin/python bench/paper_presets.py --counts [--write-docs] # parameter counts vs the authors' (no training;
                                                                   # bench/preset_counts.py)
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

from growsearch.schedule import GrowthSchedule
from growsearch.train.config import load_train_config
from growsearch.train.loop import train

PRESETS = Path(__file__).resolve().parent.parent / "presets"
ORDER = ("baseline", "dropin_frozen", "dropin_unfrozen", "dropin", "lora", "plasticity")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def families() -> list[str]:
    """Preset families: folders of ``presets/`` holding a ``config.yaml``."""
    return sorted(p.parent.name for p in PRESETS.glob("*/config.yaml"))


def variants(folder: Path) -> list[Path]:
    """The schedule files of a preset folder (every YAML but ``config.yaml``, ``study.yaml``, ``space.yaml``), in table order."""
    files = [p for p in folder.glob("*.yaml") if p.name not in ("config.yaml", "study.yaml", "space.yaml")]
    return sorted(files, key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))


def run_one(folder: Path, sched_file: Path, seed: int, out: Path, threads: int = 1, reuse: bool = False,
            synth_size: str | None = None) -> dict[str, Any]:
    """Train one (preset, variant, seed) and return its row.

    With ``reuse``, a finished run in ``out`` (``metrics.json`` with status ok and the same
    schedule and seed) is read instead of trained again. ``synth_size`` replaces the generated
    corpus's size (its root becomes ``data/synth-<size>``).
    """
    torch.set_num_threads(threads)
    cfg = load_train_config(folder / "config.yaml").with_overrides(seed=seed)
    if synth_size is not None and cfg.data.dataset == "synthetic":
        data = cfg.data.model_copy(update={"synth_size": synth_size, "root": Path(f"data/synth-{synth_size}")})
        cfg = cfg.model_copy(update={"data": data})
    sched = GrowthSchedule.load(sched_file)
    t0 = time.perf_counter()
    done = out / "metrics.json"
    m: dict[str, Any] | None = None
    if reuse and done.is_file():
        m = json.loads(done.read_text(encoding="utf-8"))
        if m.get("status") != "ok" or m.get("seed") != seed or m.get("schedule") != sched.to_dict():
            m = None
    if m is None:
        m = train(cfg, sched, out_dir=out, resume=False, log=lambda _m: None, schedule_source=str(sched_file)).metrics
    return {
        "preset": folder.parent.name if folder.name == "tiny" else folder.name,
        "variant": sched_file.stem,
        "label": sched.label,
        "seed": seed,
        "eval_eer": m["eval_eer"],
        "dev_eer": m["dev_eer"],
        "params": m["params"],
        "params_last": m["epochs"][-1]["params"],
        "trainable_params": m["epochs"][-1]["trainable_params"],
        "flops": m["flops"],
        "train_flops": m["train_flops"],
        "wall_s": m["wall_s"],
        "total_s": time.perf_counter() - t0,
        "best_epoch": m["best_epoch"],
        "epochs": len(m["epochs"]),
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and standard deviation of the EERs) over seeds per (preset, variant)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["preset"], r["variant"]), []).append(r)
    out = []
    for (preset, variant), rs in groups.items():
        def mean(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.fmean(r[k] for r in rs))

        def sd(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.stdev(r[k] for r in rs)) if len(rs) > 1 else 0.0

        out.append({
            "preset": preset, "variant": variant, "label": rs[0]["label"], "seeds": [r["seed"] for r in rs],
            "eval_eer": mean("eval_eer"), "eval_eer_sd": sd("eval_eer"),
            "dev_eer": mean("dev_eer"), "dev_eer_sd": sd("dev_eer"),
            "params": round(mean("params")), "params_last": round(mean("params_last")),
            "trainable_params": round(mean("trainable_params")), "best_epoch": [r["best_epoch"] for r in rs],
            "flops": mean("flops"), "train_flops": mean("train_flops"), "wall_s": mean("wall_s"),
        })
    return out


def _si(x: float) -> str:
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.2f} {unit}"
    return f"{x:.0f}"


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (EER in %, mean +- sd over seeds)."""
    lines = [
        "| preset | variant | eval EER % | dev EER % | params (kept) | params (last epoch) | trainable (last epoch) "
        "| FLOPs/s audio | train FLOPs | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['preset']} | {s['variant']} | {100 * s['eval_eer']:.1f} ± {100 * s['eval_eer_sd']:.1f} "
            f"| {100 * s['dev_eer']:.1f} ± {100 * s['dev_eer_sd']:.1f} | {s['params']:,} | {s['params_last']:,} | {s['trainable_params']:,} "
            f"| {_si(s['flops'])} | {_si(s['train_flops'])} | {s['wall_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--counts" in argv:  # the parameter table beside the authors' models (bench/preset_counts.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import preset_counts

        return preset_counts.main([a for a in argv if a != "--counts"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", nargs="*", default=None, help=f"preset families (default: all of {families()})")
    ap.add_argument("--variants", nargs="*", default=None, help="schedule file stems to run (default: all)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny", help="tiny variants (default) or the full presets")
    ap.add_argument("--out", type=Path, default=Path("runs/paper_presets"), help="run folders go here")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the Markdown table here")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (separate processes)")
    ap.add_argument("--reuse", action="store_true", help="read finished runs from --out instead of training again")
    ap.add_argument("--corpus-size", choices=("tiny", "small", "medium", "large", "bench"), default=None,
                    help="size of the generated corpus (default: the tiny configs' own, tiny: 24/12/12)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fams = args.families or families()
    unknown = sorted(set(fams) - set(families()))
    if unknown:
        ap.error(f"unknown preset families {unknown}; valid: {', '.join(families())}")
    t_all = time.perf_counter()
    tasks = []
    for fam in fams:
        folder = PRESETS / fam / "tiny" if args.size == "tiny" else PRESETS / fam
        for sched_file in variants(folder):
            if args.variants and sched_file.stem not in args.variants:
                continue
            for seed in args.seeds:
                tasks.append((folder, sched_file, seed, args.out / args.size / fam / sched_file.stem / f"seed{seed}"))
    rows: list[dict[str, Any]] = []
    with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, *t, threads=args.threads, reuse=args.reuse, synth_size=args.corpus_size): i for i, t in enumerate(tasks)}
        for fut in cf.as_completed(futures):
            row = {**fut.result(), "_i": futures[fut]}
            rows.append(row)
            _log(f"{row['preset']}/{row['variant']} seed {row['seed']}: eval EER {row['eval_eer']:.3f} dev EER "
                 f"{row['dev_eer']:.3f} params {row['params']} trainable {row['trainable_params']} {row['wall_s']:.1f}s "
                 f"({len(rows)}/{len(tasks)})")
    rows.sort(key=lambda r: r.pop("_i"))
    summary = summarise(rows)
    table = markdown(summary)
    _log(table)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table, encoding="utf-8")
    doc = {
        "benchmark": "paper_presets",
        "size": args.size,
        "corpus": (f"generated (synthetic, {args.corpus_size or 'tiny'}, 1 s clips)" if args.size == "tiny" else "per config"),
        "seeds": args.seeds,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                    "cpu": platform.processor() or platform.machine()},
        "total_s": time.perf_counter() - t_all,
        "summary": summary,
        "runs": rows,
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
