"""Benchmark: how long growth surgery takes compared with one training step.

For every registered backbone, on its ``tiny`` preset and one realistic preset (``resnet18``
``paper``, ``lcgrnn`` ``paper``, ``wav2vec2`` ``base``), times:

- each growth operation at representative points (grow by a typical amount with each init,
  then shrink back with the ``appended`` rule),
- ``count_flops`` (what the trainer calls every epoch),
- one training step (forward + backward + Adam step) on a random batch.

Wall-clock (``*_s``) and process CPU time (``*_cpu_s``, all threads) are both reported: on a
shared machine wall time is inflated by other jobs. Prints one JSON document on stdout;
progress goes to stderr. Usage::

    .venv/bin/python bench/growth.py                 # everything (about 1-2 minutes on 2 cores)
    .venv/bin/python bench/growth.py --tiny-only     # seconds
    .venv/bin/python bench/growth.py --batch 4 --seconds 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import torch

from growsearch.backbones import create_backbone, list_backbones
from growsearch.errors import ScheduleError
from growsearch.metrics.cost import count_flops, count_params
from growsearch.vocabulary import INITS

REALISTIC = {"resnet18": "paper", "lcgrnn": "paper", "wav2vec2": "base"}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def representative_growth(name: str, model: torch.nn.Module) -> list[tuple[str, str, int]]:
    """(point, form, neurons) to time: a typical dropin per point kind (doubling the width)."""
    pts = model.growth_points()
    out: list[tuple[str, str, int]] = []
    if name == "wav2vec2":
        mid = min(5, model.num_layers - 1)  # the paper grows encoder layer 5 of wav2vec2-base
        for suffix in (".ffn", ".attn", ""):
            p = pts[f"layer{mid}{suffix}"]
            out.append((p.name, p.forms[0], p.base_width))
        return out
    chosen = [p for p in pts.values()]
    if name == "resnet18":
        chosen = [pts[k] for k in ("stage2", "stage3") if k in pts] or chosen[:1]
    elif name == "lcgrnn":
        chosen = [pts[k] for k in ("gru2",) if k in pts] or chosen[:1]
    else:
        chosen = chosen[:1]
    for p in chosen:
        for form in p.forms:
            out.append((p.name, form, max(p.step, p.base_width // p.step * p.step)))
    return out


def time_growth(name: str, preset: str) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = create_backbone(name, preset)
    rows = []
    g = torch.Generator().manual_seed(0)
    for point, form, neurons in representative_growth(name, model):
        for init in model.growth_points()[point].inits:
            t_grow = t_shrink = c_grow = float("inf")
            try:
                for _ in range(2):  # best of two: the first call may pay one-off costs
                    t0, c0 = time.perf_counter(), time.process_time()
                    res = model.grow(point, neurons, form=form, init=init, generator=g)
                    t_grow = min(t_grow, time.perf_counter() - t0)
                    c_grow = min(c_grow, time.process_time() - c0)
                    t0 = time.perf_counter()
                    model.shrink(point, None, rule="appended")
                    t_shrink = min(t_shrink, time.perf_counter() - t0)
            except ScheduleError as exc:
                rows.append({"point": point, "form": form, "init": init, "neurons": neurons, "unsupported": str(exc)})
                continue
            rows.append({"point": point, "form": form, "init": init, "neurons": neurons,
                         "grow_s": round(t_grow, 5), "grow_cpu_s": round(c_grow, 5), "shrink_s": round(t_shrink, 5),
                         "tensors_changed": len(res.changed), "tensors_added": len(res.added)})
            _log(f"  {name}/{preset} grow {point} +{neurons} {form} {init}: {t_grow * 1e3:.1f} ms (shrink {t_shrink * 1e3:.1f} ms)")
    return rows


def time_train_step(name: str, preset: str, batch: int, seconds: float, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_backbone(name, preset).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, int(seconds * 16000))
    y = torch.randint(0, 2, (batch,))
    times, cpu = [], []
    for i in range(repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i > 0:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    flops = count_flops(model, seconds=1.0)
    t_flops = time.perf_counter() - t0
    return {"train_step_s": round(statistics.median(times), 4), "train_step_cpu_s": round(statistics.median(cpu), 4),
            "train_step_runs": len(times),
            "count_flops_s": round(t_flops, 4), "flops_per_second_of_audio": flops,
            "params": count_params(model)["total"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny-only", action="store_true", help="only the tiny presets")
    ap.add_argument("--batch", type=int, default=2, help="training batch size (default 2)")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio seconds per example (default 1)")
    ap.add_argument("--repeats", type=int, default=1, help="timed training steps after one warm-up (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    t_start = time.perf_counter()
    results = []
    for name in list_backbones():
        presets = ["tiny"] + ([] if args.tiny_only or name not in REALISTIC else [REALISTIC[name]])
        for preset in presets:
            _log(f"{name}/{preset}")
            step = time_train_step(name, preset, args.batch, args.seconds, args.repeats)
            growth = time_growth(name, preset)
            timed = [r["grow_s"] for r in growth if "grow_s" in r]
            worst = max(timed) if timed else None
            results.append({"backbone": name, "preset": preset, **step, "growth": growth,
                            "max_grow_s": worst,
                            "max_grow_over_step": round(worst / step["train_step_s"], 4) if worst else None})
    doc = {
        "bench": "growth",
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "train_step": {"batch": args.batch, "seconds": args.seconds, "optimizer": "Adam", "loss": "cross_entropy"},
        "inits": list(INITS),
        "results": results,
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
