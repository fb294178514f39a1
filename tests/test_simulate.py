"""Simulated search on a GrowBench table (growsearch.search.simulate), fast: a table whose
values are a deterministic function of the schedule stands in for training (as the
integrity tests' ``_fake_values``), over GrowBench's own space."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from growsearch.errors import ConfigError
from growsearch.schedule import GrowthSchedule
from growsearch.search.runner import sampler_for
from growsearch.search.simulate import FORMAT, row_key, simulate, table_from_data
from growsearch.search.space import load_space
from growsearch.search.study import SamplerConfig
from growsearch.vocabulary import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "growbench.yaml"
OBJ = ["dev_eer", "params", "train_flops"]


def _result(sched: GrowthSchedule) -> dict[str, Any]:
    text = json.dumps(sched.to_dict(), sort_keys=True)
    grown = sum(e.neurons or 0 for e in sched.events if e.action == "grow")
    shrunk = any(e.action == "shrink" for e in sched.events)
    return {"dev_eer": 0.2 + (sum(map(ord, text)) % 89) / 400.0, "eval_eer": 0.3, "flops": 1e5,
            "params": 1000 + (0 if shrunk else 50 * grown), "train_flops": 1e9 + 1e7 * grown}


def _table(drop: int = 0) -> dict[str, Any]:
    space = load_space(SPACE, epochs=6)
    grid = space.grid()
    scheds = {row_key(s): s for s in (space.decode(dict(zip(grid, c, strict=True))) for c in itertools.product(*grid.values()))}
    rows = [{"schedule": json.loads(k), "reference": None, "seeds": {"0": _result(s)}} for k, s in sorted(scheds.items())][drop:]
    base = GrowthSchedule.empty()
    rows.append({"schedule": json.loads(row_key(base)), "reference": "baseline", "seeds": {"0": _result(base)}})
    return {"format": FORMAT, "provenance": {"seeds": [0]}, "space": yaml.safe_load(SPACE.read_text()), "epochs": 6, "rows": rows}


@pytest.mark.parametrize("sampler", [pytest.param(s, marks=pytest.mark.slow) if s == "gp" else s  # GP: ~2 s a trial
                                     for s in SAMPLERS if s != "nsga3"])
def test_simulated_study_is_reproducible_distinct_and_clocked(sampler: str) -> None:
    table = table_from_data(_table())
    runs = []
    for _ in range(2):
        s = sampler_for(SamplerConfig(name=sampler, seed=5, population_size=4), table.space, 12)
        runs.append(simulate(table, s, objectives=OBJ, directions=["minimize"] * 3, trials=12, seed="0"))
    one, two = runs
    assert [(t.number, t.params) for t in one] == [(t.number, t.params) for t in two]
    assert len(one) == 12 and one[0].label == "baseline"
    keys = [t.key for t in one]
    assert len(set(keys)) == len(keys), "a schedule simulated twice"
    flops = [table.rows[k]["seeds"]["0"]["train_flops"] for k in keys]
    assert [t.clock for t in one] == pytest.approx(list(np.cumsum(flops)))
    for t in one:
        assert t.values == [table.rows[t.key]["seeds"]["0"][n] for n in OBJ]


def test_simulator_fails_what_the_table_lacks_and_refuses_a_wrong_table() -> None:
    table = table_from_data(_table(drop=300))
    s = sampler_for(SamplerConfig(name="random", seed=1), table.space, 10)
    run = simulate(table, s, objectives=OBJ, directions=["minimize"] * 3, trials=10, seed="0")
    assert len(run) == 10 and all(t.key in table.rows for t in run)
    with pytest.raises(ConfigError, match="not a growbench/1 table"):
        table_from_data({**_table(), "format": "other"})
