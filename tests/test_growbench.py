"""GrowBench (issue 13): the table builder, the table, and the simulator against a live study.

The builder and the live study train for real (local Ray, the tiny generated corpus), so
those tests are slow-marked; loading the committed table (when present) is not.
"""

from __future__ import annotations

import importlib.util
import itertools
import shlex
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from growsearch.search.runner import run_study, sampler_for
from growsearch.search.simulate import FORMAT, load_table, row_key, simulate, table_from_data
from growsearch.search.study import parse_study_config

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "growbench" / "lcgrnn_bench.json.gz"


def _growbench() -> Any:
    spec = importlib.util.spec_from_file_location("growbench_bench", ROOT / "bench" / "growbench.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["growbench_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


def _check_table_covers_its_space(path: Path) -> Any:
    table = load_table(path)
    seeds = table.seeds
    grid = table.space.grid()
    wanted = {row_key(table.space.decode(dict(zip(grid, c, strict=True)))) for c in itertools.product(*grid.values())}
    assert wanted <= set(table.rows), f"{len(wanted - set(table.rows))} schedules of the space are missing"
    assert table.baseline() is not None
    for row in table.rows.values():
        assert sorted(row["seeds"]) == sorted(seeds), row["schedule"]
        for res in row["seeds"].values():
            for key in ("dev_eer", "eval_eer", "params", "flops", "train_flops"):
                assert res[key] is not None, key
            assert len(res["dev_eer_curve"]) == table.epochs
            assert len(res["train_flops_curve"]) == table.epochs and res["train_flops_curve"][-1] == pytest.approx(res["train_flops"])
    return table


@pytest.mark.skipif(not TABLE.exists(), reason="the GrowBench table is not built in this checkout")
def test_the_shipped_table_loads_covers_its_space_and_names_its_rebuild() -> None:
    assert TABLE.stat().st_size < 20 * 2**20
    table = _check_table_covers_its_space(TABLE)
    assert len(table.seeds) >= 3 and len(table.rows) >= 300
    gb = _growbench()
    build = table.data["provenance"]["command"].split(" && ")[0]
    args = gb.parser().parse_args(shlex.split(build)[2:])
    assert [str(s) for s in args.seeds] == table.seeds and args.epochs == table.epochs
    assert gb.space_data(args) == table.data["space"]


@pytest.mark.slow
def test_smoke_build_export_covers_the_space_and_provenance_matches_the_command(tmp_path: Path) -> None:
    gb = _growbench()
    out, file = tmp_path / "gb", tmp_path / "table.json.gz"
    opts = ["--smoke", "--epochs", "3", "--seeds", "0", "1", "--out", str(out), "--jobs", "2"]
    assert gb.main(["build", *opts]) == 0
    assert gb.main(["export", *opts, "--file", str(file)]) == 0
    table = _check_table_covers_its_space(file)
    assert table.data["format"] == FORMAT and table.seeds == ["0", "1"]
    prov = table.data["provenance"]
    for key in ("growsearch", "torch", "optuna"):
        assert key in prov["versions"]
    assert prov["corpus"]["profile"] == "tiny" and "generator_version" in prov["corpus"]
    # the command in the table rebuilds the same studies (same config hashes)
    build, export = prov["command"].split(" && ")
    assert shlex.split(export)[:3] == ["python", "bench/growbench.py", "export"]
    args = gb.parser().parse_args(shlex.split(build)[2:])
    assert args.action == "build" and args.smoke and args.seeds == [0, 1] and args.epochs == 3
    assert [c.config_hash() for c in gb.study_configs(args)] == [s["config_hash"] for s in prov["studies"]]
    # resumable: building again trains nothing more
    before = {s["name"]: s["complete"] for s in prov["studies"]}
    assert gb.main(["build", *opts]) == 0
    for cfg in gb.study_configs(args):
        done = optuna.load_study(study_name=cfg.name, storage=cfg.storage).get_trials(states=(TrialState.COMPLETE,))
        assert len(done) == before[cfg.name]


def _table_of(study: optuna.Study, cfg: Any) -> dict[str, Any]:
    """A one-seed GrowBench table made from a live study's COMPLETE trials."""
    rows: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        m = t.user_attrs["metrics"]
        key = row_key(t.user_attrs["schedule"])
        rows[key] = {"schedule": t.user_attrs["schedule"], "reference": t.user_attrs.get("reference"),
                     "seeds": {"0": {k: m[k] for k in ("dev_eer", "eval_eer", "params", "flops", "train_flops")}}}
    return {"format": FORMAT, "provenance": {"seeds": [0]}, "space": cfg.raw["space"], "epochs": cfg.epochs,
            "rows": list(rows.values())}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["growth", "random"])
def test_simulator_replays_a_live_study(tmp_path: Path, corpus: Path, sampler: str) -> None:
    """A live study (real local Ray, one trial at a time) and a simulation of it on a table of
    its own results propose the same trials, duplicates refused alike, in the same order."""
    space = {"backbone": "lcgrnn", "preset": "tiny_authors", "encoding": "flat", "events": {"min": 1, "max": 1},
             "epoch": {"low": 1, "high": 1}, "points": {"gru2": {"neurons": {"low": 4, "high": 4}}, "gru4": {"neurons": {"low": 2, "high": 2}}},
             "inits": ["random", "zero_fanout"], "freeze": ["all", "new_only", "new_units"],
             "plasticity": {"enabled": [False, True], "after": {"low": 1, "high": 1}, "rules": ["appended"]}}
    train = {"seed": 0, "data": {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny", "clip_samples": 16000},
             "model": {"backbone": "lcgrnn", "preset": "tiny_authors"},
             "training": {"epochs": 3, "batch_size": 8, "device": "cpu", "max_batches_per_epoch": 2, "max_eval_batches": 2}}
    cfg = parse_study_config({"name": "live", "train": train, "space": space, "epochs": 3, "objectives": ["dev_eer", "params", "train_flops"],
                              "sampler": {"name": sampler, "seed": 7, "population_size": 2}, "budget": {"trials": 6},
                              "reference": ["baseline"], "outputs": str(tmp_path / "out"),
                              "execution": {"num_cpus": 1, "max_concurrent": 1, "retries": 0}}, "live", base=ROOT)
    run_study(cfg, progress_every=1e9, log=lambda s: None)
    live = optuna.load_study(study_name="live", storage=cfg.default_storage)
    table = table_from_data(_table_of(live, cfg), "live table")
    # the table's space and the study's space decode every proposal identically
    for t in live.get_trials(states=(TrialState.COMPLETE,)):
        if t.params:
            assert table.space.decode(t.params) == cfg.space.decode(t.params)
    sim = simulate(table, sampler_for(cfg.sampler, cfg.space, cfg.budget.trials), objectives=cfg.objective_names,
                   directions=cfg.directions, trials=6, seed="0")
    done = live.get_trials(states=(TrialState.COMPLETE,))
    assert [(t.number, t.params, row_key(t.user_attrs["schedule"])) for t in done] == [(s.number, s.params, s.key) for s in sim]
    assert [s.values for s in sim] == [list(t.values) for t in done]
