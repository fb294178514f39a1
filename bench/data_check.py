"""Speed of the up-front data check (decode every listed file) on an ASVspoof-like corpus; prints JSON.

Writes ``--files`` 16 kHz FLAC files of ASVspoof 2019 LA's length distribution (1.5-6 s,
mean about 3.4 s; a speech-like harmonic signal with noise, so FLAC compresses it as it
compresses speech) and decodes all of them three ways with
:func:`growsearch.data.decode_check.decode_verdicts`: on one thread, on the default pool
(one thread per CPU this process may use), and again with the verdict cache (what every
later trial and run on the machine pays). Each rate is extrapolated to the 121,461 files
of ASVspoof 2019 LA (train 25,380 + dev 24,844 + eval 71,237). Usage::

    python bench/data_check.py [--files 2000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ASVSPOOF2019_LA_FILES = 25_380 + 24_844 + 71_237


def la_like_wave(rng: np.random.Generator) -> np.ndarray:
    """One voiced-looking 16 kHz clip with ASVspoof 2019 LA's length distribution (1.5-6 s,
    mean about 3.4 s), float32; ``bench/data_pipeline.py`` builds its corpus from it too."""
    seconds = float(np.clip(rng.gamma(6.0, 3.4 / 6.0), 1.5, 6.0))
    t = np.arange(int(seconds * 16_000)) / 16_000
    f0 = 110 + 80 * rng.random()
    wave = sum(np.sin(2 * np.pi * f0 * k * t + rng.random()) / k for k in range(1, 8)) * 0.1
    wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.003, t.size)
    return np.asarray(wave, dtype=np.float32)


def write_corpus(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"LA_T_{i:07d}.flac"
        sf.write(str(p), la_like_wave(rng), 16_000, subtype="PCM_16")
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=None, help="threads of the parallel pass (default: CPUs usable)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    with tempfile.TemporaryDirectory(prefix="gs-bench-data-check-") as tmp:
        os.environ["GROWSEARCH_CACHE_DIR"] = str(Path(tmp) / "cache")
        from growsearch.data.decode_check import decode_verdicts

        corpus = Path(tmp) / "flac"
        corpus.mkdir()
        paths = write_corpus(corpus, args.files)
        audio_s = sum(sf.info(str(p)).frames for p in paths) / 16_000
        out: dict[str, object] = {"files": len(paths), "audio_hours": round(audio_s / 3600, 3),
                                  "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
        for name, kw in (("serial", {"workers": 1, "use_cache": False}),
                         ("parallel", {"workers": args.workers, "use_cache": False}),
                         ("cached", {"workers": args.workers, "use_cache": True})):
            t0 = time.perf_counter()
            verdicts = decode_verdicts(paths, root=corpus, **kw)  # type: ignore[arg-type]
            dt = time.perf_counter() - t0
            assert all(v is None for v in verdicts.values())
            rate = len(paths) / dt
            out[name] = {"seconds": round(dt, 3), "files_per_s": round(rate, 1),
                         "asvspoof2019_la_estimate_s": round(ASVSPOOF2019_LA_FILES / rate, 1)}
        out["parallel_speedup"] = round(out["serial"]["seconds"] / out["parallel"]["seconds"], 2)  # type: ignore[index]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
