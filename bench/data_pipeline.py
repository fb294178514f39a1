"""Speed of the training data path with and without the shared feature cache; prints JSON.

The training data path is what produces the input of a backbone's body in one training
epoch: the train DataLoader (decode FLAC, random crop, batch of 32, shuffled) plus the
front-end (LFCC for the tiny LC-GRNN, log-Mel for the tiny ResNet18), on one CPU thread and
without DataLoader workers. Three rates per backbone, in samples per second:

- ``uncached``: ``data.feature_cache: false`` (today's path: every epoch decodes and featurizes);
- ``cold``: the first epoch with an empty cache, building the train entry included (the cache
  build decodes on the default thread pool, as in a trial);
- ``warm``: an epoch reading the built entry (what every later epoch and trial pays).

Uncached and warm epochs are interleaved ``--repeats`` times and their medians reported (the
load of a shared machine moves between epochs); ``cold`` is measured once.

The cached batches are checked to equal the uncached ones bit for bit. The corpus is
written in the ASVspoof 2019 LA layout with ``--utterances`` training utterances (default
25,380, LA's train size) of LA's length distribution (as ``bench/data_check.py``: 1.5-6 s,
mean about 3.4 s, so about a third are longer than the 4.04 s clip and are cropped at
random); ``--synth-size`` adds the same measurement on the generated corpus of that size.
The top-level rates add both backbones (total samples / total seconds). Usage::

    python bench/data_pipeline.py [--utterances 25380] [--synth-size small] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ siblings
from data_check import la_like_wave

LA_TRAIN = 25_380
BACKBONES = ("lcgrnn", "resnet18")


def write_la_corpus(root: Path, n_train: int, n_other: int = 16, seed: int = 0) -> None:
    """FLAC files of LA's length distribution and the three CM protocols, LA layout."""
    rng = np.random.default_rng(seed)
    proto = root / "ASVspoof2019_LA_cm_protocols"
    proto.mkdir(parents=True)
    for split, code, name, n in (("train", "T", "train.trn", n_train), ("dev", "D", "dev.trl", n_other),
                                 ("eval", "E", "eval.trl", n_other)):
        folder = root / f"ASVspoof2019_LA_{split}" / "flac"
        folder.mkdir(parents=True)
        lines = []
        for i in range(n):
            utt = f"LA_{code}_{i + 1:07d}"
            sf.write(str(folder / f"{utt}.flac"), la_like_wave(rng), 16_000, subtype="PCM_16")
            bona = i % 10 == 0 or i == 0
            lines.append(f"LA_{i % 20:04d} {utt} - {'-' if bona else 'A0' + str(1 + i % 6)} {'bonafide' if bona else 'spoof'}")
        (proto / f"ASVspoof2019.LA.cm.{name}.txt").write_text("\n".join(lines) + "\n")


def _epoch(ds, model, epoch: int) -> tuple[int, float, list[torch.Tensor]]:  # type: ignore[no-untyped-def]
    from growsearch.train.evaluate import make_loader

    t0 = time.perf_counter()
    ds.set_epoch(epoch)
    n, first = 0, []
    with torch.no_grad():
        for wave, _label, _u, _a in make_loader(ds, batch_size=32, shuffle=True, seed=epoch, num_workers=0, pin=False):
            x = wave.as_subclass(torch.Tensor) if getattr(wave, "gs_features", False) else model.frontend(wave)
            n += x.shape[0]
            if len(first) < 3:
                first.append(x)
    return n, time.perf_counter() - t0, first


def measure(data_kw: dict, cache: Path, backbone: str, repeats: int) -> dict[str, float]:
    from growsearch.backbones import create_backbone
    from growsearch.data.config import DataConfig
    from growsearch.data.feature_cache import with_feature_cache
    from growsearch.data.splits import build_splits

    model = create_backbone(backbone, "tiny")
    cpu = torch.device("cpu")
    plain = build_splits(DataConfig(**data_kw, feature_cache=False), seed=0).train
    cfg = DataConfig(**data_kw, cache_dir=cache / backbone)
    base = build_splits(cfg, seed=0)
    t0 = time.perf_counter()
    splits = with_feature_cache(base, cfg, model.frontend, cpu)  # builds the train (and small dev/eval) entries
    t_build = time.perf_counter() - t0
    n_c, t_c, _ = _epoch(splits.train, model, 0)
    warm = with_feature_cache(build_splits(cfg, seed=0), cfg, model.frontend, cpu).train
    rates_u, rates_w = [], []
    for r in range(repeats):  # interleaved, medians: a shared machine's load moves between epochs
        n_u, t_u, ref = _epoch(plain, model, r)
        n_w, t_w, got = _epoch(warm, model, r)
        if not all(torch.equal(a, b) for a, b in zip(ref, got, strict=True)):
            raise SystemExit(f"{backbone}: cached batches differ from uncached ones")
        rates_u.append(n_u / t_u)
        rates_w.append(n_w / t_w)
    u, w = statistics.median(rates_u), statistics.median(rates_w)
    kinds = warm.entry.kinds
    return {"samples": n_w, "fixed_clip_fraction": round(float((kinds == 0).mean()), 3),
            "uncached_samples_per_s": u, "cold_samples_per_s": n_c / (t_build + t_c),
            "warm_samples_per_s": w, "speedup_warm_vs_uncached": w / u,
            "_t": (n_w / u, t_build + t_c, n_w / w)}  # type: ignore[dict-item]


def run(data_kw: dict, cache: Path, repeats: int) -> dict[str, object]:
    per = {b: measure(data_kw, cache, b, repeats) for b in BACKBONES}
    n = sum(float(p["samples"]) for p in per.values())
    tu, tc, tw = (sum(p["_t"][i] for p in per.values()) for i in range(3))  # type: ignore[index]
    for p in per.values():
        p.pop("_t")
        for k, v in p.items():
            p[k] = round(v, 2) if isinstance(v, float) else v
    return {"uncached_samples_per_s": round(n / tu, 1), "cold_samples_per_s": round(n / tc, 1),
            "warm_samples_per_s": round(n / tw, 1), "speedup_warm_vs_uncached": round(tu / tw, 2), "backbones": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=LA_TRAIN, help="training utterances of the LA-like corpus")
    ap.add_argument("--synth-size", default=None, help="also measure the generated corpus of this size (e.g. small, bench)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved uncached/warm epoch pairs (medians are reported)")
    args = ap.parse_args()
    if args.utterances < 1 or args.repeats < 1:
        ap.error("--utterances and --repeats must be at least 1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gs-bench-data-pipeline-") as tmp:
        os.environ["GROWSEARCH_CACHE_DIR"] = str(Path(tmp) / "machine-cache")
        corpus = Path(tmp) / "la"
        t0 = time.perf_counter()
        write_la_corpus(corpus, args.utterances)
        print(f"wrote {args.utterances} utterances in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        la = run({"dataset": "asvspoof2019_la", "root": corpus}, Path(tmp) / "cache-la", args.repeats)
        out: dict[str, object] = {**{k: v for k, v in la.items() if k != "backbones"},
                                  "corpus": {"layout": "ASVspoof 2019 LA", "train_utterances": args.utterances,
                                             "clip_samples": 64_600}, "backbones": la["backbones"],
                                  "threads": 1, "torch": torch.__version__}
        if args.synth_size:
            out[f"synthetic_{args.synth_size}"] = run(
                {"dataset": "synthetic", "root": Path(tmp) / "synth", "synth_size": args.synth_size},
                Path(tmp) / "cache-synth", args.repeats)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
