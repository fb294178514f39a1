"""GrowBench: a tabular benchmark of growth schedules for the tiny LC-GRNN (issue 13, item 3).

Every schedule of a discrete growth space (``search_spaces/growbench.yaml``: one growth event,
point x amount x epoch x init x freeze x plasticity) is trained with several training seeds on
the generated corpus's ``bench`` profile (``configs/bench.yaml``), and the results are written
to one compressed table that simulated searches read instead of training
(``bench/search_quality.py --table``).

The table is built WITH growsearch: one study per training seed, Optuna's grid sampler
(``sampler: grid``) over the space's flat encoding, the baseline as the reference trial. So
the build is resumable (run ``build`` again after an interrupt: COMPLETE trials stay, the
grid goes on where it stopped), uses the shared-prefix cache (schedules growing at epoch e
start from the baseline's first e epochs), and a grid point whose schedule another point
already gave is failed as a duplicate, never trained. Usage::

    python bench/growbench.py build  [--seeds 0 1 2] [--epochs 6] [--jobs 2] [--out runs/growbench] [--smoke]
    python bench/growbench.py export [same options] [--file growbench/lcgrnn_bench.json.gz]
    python bench/growbench.py count  [same options]      # grid points and distinct schedules; no training

``export`` prints a JSON summary on stdout and writes the table: gzip-compressed JSON with
``provenance`` (versions, corpus profile and VERSION, the config hash of every seed's study,
seeds, epochs, the exact rebuild command), ``space`` (the space file's content), and one row
per distinct schedule with its per-seed results (final dev and eval EER, params, FLOPs,
training FLOPs, per-epoch dev EER and cumulative training FLOPs, wall seconds).
``--smoke`` is the pipeline end to end in about a minute (tiny corpus, a 4-schedule space,
2 batches per epoch): for tests, not for numbers.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The objectives every GrowBench study records (Optuna's values; the table keeps all metrics).
OBJECTIVES = ["dev_eer", "params", "train_flops"]
#: Sessions a seed's study is resumed after one gave up (see :func:`build`).
RESUMES = 4
SMOKE_SPACE: dict[str, Any] = {
    "backbone": "lcgrnn", "preset": "tiny_authors", "encoding": "flat",
    "description": "GrowBench smoke space (tests only)",
    "events": {"min": 1, "max": 1}, "epoch": {"low": 1, "high": 1},
    "points": {"gru2": {"neurons": {"low": 4, "high": 4}}, "gru4": {"neurons": {"low": 2, "high": 2}}},
    "forms": ["inplace"], "inits": ["random"], "freeze": ["all"], "optimizer_state": ["fresh"],
    "plasticity": {"enabled": [False, True], "after": {"low": 1, "high": 1}, "rules": ["appended"]},
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["build", "export", "count"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (one study each)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2, help="trials at once (one CPU each)")
    ap.add_argument("--out", default="runs/growbench", help="studies, trial folders and the shared caches")
    ap.add_argument("--config", default="configs/bench.yaml", help="the training config")
    ap.add_argument("--space", default="search_spaces/growbench.yaml")
    ap.add_argument("--smoke", action="store_true", help="tiny corpus, 4-schedule space, 2 batches per epoch")
    ap.add_argument("--limit", type=int, default=None, help="build: stop each study at this many COMPLETE trials (to measure)")
    ap.add_argument("--file", default="growbench/lcgrnn_bench.json.gz", help="export: the table file")
    return ap


def rebuild_command(args: argparse.Namespace) -> str:
    """The command that rebuilds the table ``args`` describe (build, then export)."""
    opts = ["--seeds", *map(str, args.seeds), "--epochs", str(args.epochs), "--jobs", str(args.jobs),
            "--out", args.out, "--config", args.config, "--space", args.space]
    if args.smoke:
        opts.append("--smoke")
    base = " ".join(shlex.quote(x) for x in opts)
    return f"python bench/growbench.py build {base} && python bench/growbench.py export {base} --file {shlex.quote(args.file)}"


def space_data(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        return json.loads(json.dumps(SMOKE_SPACE))
    data = yaml.safe_load((ROOT / args.space).read_text() if not Path(args.space).is_absolute() else Path(args.space).read_text())
    return dict(data)


def train_data(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    path = Path(args.config) if Path(args.config).is_absolute() else ROOT / args.config
    data = dict(yaml.safe_load(path.read_text()))
    data["seed"] = int(seed)
    out = Path(args.out).resolve()
    data["data"] = dict(data["data"])
    if args.smoke:
        data["data"].update({"root": str(out / "data" / "synth-tiny"), "synth_size": "tiny"})
        data["training"] = {**data["training"], "max_batches_per_epoch": 2, "max_eval_batches": 2}
    else:
        root = Path(str(data["data"].get("root") or f"data/synth-{data['data'].get('synth_size', 'small')}"))
        data["data"]["root"] = str(root if root.is_absolute() else (out / root))
    return data


def study_configs(args: argparse.Namespace) -> list[Any]:
    """One study config per training seed (what ``build`` runs and ``export`` reads)."""
    from growsearch.search.study import parse_study_config

    out = Path(args.out).resolve()
    space = space_data(args)
    n = count_schedules(args)["distinct"]
    cfgs = []
    for seed in args.seeds:
        study = {
            "name": f"growbench-{'smoke' if args.smoke else 'lcgrnn'}-e{args.epochs}-s{seed}",
            "description": "GrowBench: every schedule of the grid, one training seed",
            "train": train_data(args, seed),
            "space": space,
            "epochs": args.epochs,
            "objectives": OBJECTIVES,
            "sampler": {"name": "grid", "seed": 0},
            "budget": {"trials": n + 1},  # the distinct schedules and the baseline
            "reference": ["baseline"],
            "storage": f"sqlite:///{out / 'growbench.db'}",
            "outputs": str(out / f"seed{seed}"),
            "execution": {"num_cpus": args.jobs, "cpus_per_trial": 1, "max_concurrent": args.jobs, "retries": 2,
                          "shared_dir": str(out / "shared"), "prefix_reuse": True},
        }
        cfgs.append(parse_study_config(study, f"growbench seed {seed}", base=ROOT))
    return cfgs


def count_schedules(args: argparse.Namespace) -> dict[str, int]:
    """Grid points of the space and the distinct schedules they decode to."""
    from growsearch.search.space import parse_space

    space = parse_space(space_data(args), args.space, epochs=args.epochs)
    grid = space.grid()
    keys = list(grid)
    seen = {schedule_key(space.decode(dict(zip(keys, combo, strict=True))).to_dict())
            for combo in itertools.product(*grid.values())}
    total = 1
    for v in grid.values():
        total *= len(v)
    return {"grid_points": total, "distinct": len(seen)}


def schedule_key(schedule: dict[str, Any]) -> str:
    """One spelling of a schedule (label dropped): the table's row key."""
    from growsearch.search.simulate import row_key

    return row_key(schedule)


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Run every seed's study to its budget. A session that gives up (the grid's last free
    points all repeat schedules it has, or a few trials failed) is resumed, at most
    ``RESUMES`` times: each session fails the repeats it meets, so the grid shrinks."""
    from growsearch.errors import RunFailed
    from growsearch.search.runner import run_study

    out: dict[str, Any] = {"studies": []}
    for cfg in study_configs(args):
        if args.limit is not None:
            cfg = cfg.with_overrides(trials=args.limit)
        t0 = time.perf_counter()
        complete, sessions, last_error = 0, 0, None
        while sessions <= RESUMES:
            sessions += 1
            try:
                summary = run_study(cfg, log=lambda s: print(s, file=sys.stderr, flush=True), progress_every=60.0)
                complete, last_error = summary.complete, None
                if summary.interrupted:  # Ctrl-C: stop the whole build (rerun it to resume)
                    out["interrupted"] = True
                    out["studies"].append({"name": cfg.name, "complete": complete, "interrupted": True})
                    return out
                break
            except RunFailed as exc:
                last_error = str(exc)
                print(f"growbench: {cfg.name}: {exc}; resuming", file=sys.stderr, flush=True)
        out["studies"].append({"name": cfg.name, "wall_s": round(time.perf_counter() - t0, 1), "complete": complete,
                               "sessions": sessions, "error": last_error})
    return out


def export(args: argparse.Namespace) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from growsearch.data import synthetic_bench
    from growsearch.search.attrs import TRIAL_CURVES, TRIAL_METRICS, TRIAL_REFERENCE, TRIAL_SCHEDULE
    from growsearch.search.trainable import package_versions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: dict[str, dict[str, Any]] = {}
    studies = []
    for seed, cfg in zip(args.seeds, study_configs(args), strict=True):
        study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        walls = []
        for t in trials:
            sched = TRIAL_SCHEDULE.get(t)
            metrics = TRIAL_METRICS.get(t) or {}
            curves = TRIAL_CURVES.get(t) or {}
            if sched is None:
                continue
            key = schedule_key(sched)
            row = rows.setdefault(key, {"schedule": json.loads(key), "reference": TRIAL_REFERENCE.get(t), "seeds": {}})
            wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
            walls.append(wall or 0.0)
            row["seeds"][str(seed)] = {
                "dev_eer": metrics.get("dev_eer"), "eval_eer": metrics.get("eval_eer"),
                "params": metrics.get("params"), "flops": metrics.get("flops"),
                "train_flops": metrics.get("train_flops"), "best_epoch": metrics.get("best_epoch"),
                "dev_eer_curve": curves.get("dev_eer"), "train_flops_curve": curves.get("train_flops"),
                "wall_s": None if wall is None else round(wall, 2), "trial": t.number,
            }
        studies.append({"name": cfg.name, "seed": seed, "config_hash": cfg.config_hash(),
                        "train_config_hash": cfg.train.config_hash(), "complete": len(trials),
                        "trial_wall_s_total": round(sum(walls), 1)})
    counts = count_schedules(args)
    from growsearch.search.simulate import FORMAT

    table = {
        "format": FORMAT,
        "provenance": {
            "command": rebuild_command(args),
            "versions": package_versions(),
            "corpus": {"profile": "tiny" if args.smoke else "bench", "generator_version": synthetic_bench.VERSION,
                       "strength": getattr(synthetic_bench, "STRENGTH", None)},
            "config": args.config, "space_file": None if args.smoke else args.space,
            "seeds": list(args.seeds), "epochs": args.epochs, "objectives": OBJECTIVES,
            "studies": studies, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": _git_commit(),
        },
        "space": space_data(args),
        "epochs": args.epochs,
        "grid": counts,
        "rows": sorted(rows.values(), key=lambda r: (r["reference"] != "baseline", json.dumps(r["schedule"], sort_keys=True))),
    }
    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(table, separators=(",", ":"), sort_keys=True).encode()
    tmp = path.with_name(path.name + ".tmp")
    with gzip.GzipFile(filename="", mode="wb", fileobj=tmp.open("wb"), mtime=0, compresslevel=9) as fh:
        fh.write(raw)
    tmp.replace(path)
    complete_rows = sum(1 for r in table["rows"] if len(r["seeds"]) == len(args.seeds))
    return {"file": str(path), "bytes": path.stat().st_size, "rows": len(table["rows"]), "rows_all_seeds": complete_rows,
            "distinct_schedules": counts["distinct"], "studies": studies}


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.action == "count":
        result: dict[str, Any] = count_schedules(args)
    elif args.action == "build":
        result = build(args)
    else:
        result = export(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
