"""Time ``growsearch pareto``, ``export`` and ``show`` on a study of N trials (default 10,000).

Builds the study in SQLite with ``study.add_trials`` (one bulk call; trials carry the user
attrs the real search writes: schedule, curves, metrics, seed), then runs each command as a
subprocess and prints JSON with the wall times in seconds::

    .venv/bin/python bench/report_scale.py [--trials 10000] [--dir /tmp/x] [--reuse] [--html]

Wall times depend on the machine's load (printed as ``load_average_1min``); ``cpu_s`` is
the commands' own CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fast_sqlite_writes(storage: object) -> None:
    """Benchmark set-up only: no fsync per commit (``PRAGMA synchronous=OFF``)."""
    import sqlalchemy as sa

    engine = storage.engine  # type: ignore[attr-defined]

    @sa.event.listens_for(engine, "connect")
    def _pragma(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--failed", type=int, default=100)
    ap.add_argument("--dir", default=None, help="folder for study.db (default: a temporary one)")
    ap.add_argument("--html", action="store_true", help="also time pareto --html")
    ap.add_argument("--reuse", action="store_true", help="keep an existing --dir/study.db (skip the build)")
    args = ap.parse_args()

    import optuna

    from growsearch.search.storage import open_storage

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic-study builder is a test helper
    from synthetic_study import build_demo_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")
    folder = Path(args.dir or tempfile.mkdtemp(prefix="report_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "study.db"
    url = f"sqlite:///{db}"
    build_s = None
    if not (args.reuse and db.exists()):
        if db.exists():
            db.unlink()
        t0 = time.perf_counter()
        storage = open_storage(url, heartbeat=False)
        fast_sqlite_writes(storage)
        build_demo_study(storage, "scale", args.trials, seed=0, n_failed=args.failed)
        build_s = round(time.perf_counter() - t0, 2)
    n = len(optuna.load_study(study_name="scale", storage=open_storage(url, heartbeat=False)).get_trials(deepcopy=False))

    cmds = {
        "pareto": ["pareto", "scale", "--storage", url],
        "pareto_json": ["pareto", "scale", "--storage", url, "--json"],
        "export": ["export", "scale", "--storage", url, "-o", str(folder / "best.yaml"), "--pick", "knee"],
        "show": ["show", "scale", "--storage", url],
        "list": ["list", "--storage", url],
    }
    if args.html:
        cmds["pareto_html"] = ["pareto", "scale", "--storage", url, "--html", str(folder / "report.html")]
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, argv in cmds.items():
        t = time.perf_counter()
        cpu0 = _children_cpu()
        r = subprocess.run([sys.executable, "-m", "growsearch", *argv], capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
        times[name] = round(time.perf_counter() - t, 3)
        cpu[name] = round(_children_cpu() - cpu0, 3)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            raise SystemExit(f"{name} failed with exit {r.returncode}")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import growsearch.cli"], check=True)
    times["python_startup"] = round(time.perf_counter() - t, 3)
    print(json.dumps({
        "trials": n,
        "db_mb": round(db.stat().st_size / 2**20, 1),
        "build_s": build_s,
        "wall_s": times,
        "cpu_s": cpu,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "limit_s": 10,
        "ok": all(v < 10 for k, v in times.items() if k in ("pareto", "export", "show")),
    }, indent=2))


if __name__ == "__main__":
    main()
