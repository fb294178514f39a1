"""The flat encoding of a search space (``encoding: flat``): a fixed set of parameters that
Optuna's grid sampler enumerates, decoding to the same schedules as the conditional one."""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
import yaml

from growsearch.errors import ConfigError
from growsearch.search.space import load_space, parse_space
from growsearch.search.study import parse_study_config

ROOT = Path(__file__).resolve().parents[1]
GROWBENCH = ROOT / "search_spaces" / "growbench.yaml"


def _grid_params(space) -> list[dict]:
    grid = space.grid()
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def test_flat_and_conditional_encodings_decode_identically() -> None:
    flat = load_space(GROWBENCH, epochs=6)
    data = yaml.safe_load(GROWBENCH.read_text())
    cond = parse_space({**data, "encoding": "conditional"}, "conditional", epochs=6)
    params = _grid_params(flat)
    assert len(params) == 384
    for p in params:
        c = flat.to_conditional(p)
        assert cond.decode(c) == flat.decode(p) == flat.decode(c)
    schedules = {flat.decode(p).to_json() for p in params}
    assert len(schedules) == 336  # a shrink clamped to the last epoch repeats a shorter one


def test_every_conditional_proposal_has_a_flat_twin() -> None:
    """The conditional space proposes nothing the flat grid lacks (same schedule set)."""
    flat = load_space(GROWBENCH, epochs=6)
    cond = parse_space({**yaml.safe_load(GROWBENCH.read_text()), "encoding": "conditional"}, "c", epochs=6)
    grid = {flat.decode(p).to_json() for p in _grid_params(flat)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        t = study.ask()
        cond.define_by_run(t)
        assert cond.decode(t.params).to_json() in grid
        study.tell(t, 0.0)


def test_flat_define_by_run_suggests_the_grid_parameters() -> None:
    flat = load_space(GROWBENCH, epochs=6)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    t = study.ask()
    flat.define_by_run(t)
    assert sorted(t.params) == sorted(flat.grid())
    assert all(t.params[k] in v for k, v in flat.grid().items())


@pytest.mark.parametrize(("change", "needle"), [
    ({"points": {"gru2": {"neurons": {"low": 4, "high": 8, "step": 4}}, "gru4": {"neurons": {"low": 2, "high": 2}}}},
     "same number of neuron amounts"),
    ({"points": {"gru2": {"neurons": {"low": 4, "high": 8, "step": 4}, "inits": ["random"]}}}, "not per point"),
])
def test_bad_flat_space_is_one_clear_error(change: dict, needle: str) -> None:
    data = {**yaml.safe_load(GROWBENCH.read_text()), **change}
    with pytest.raises(ConfigError, match=needle):
        parse_space(data, "flat.yaml", epochs=6)


def test_grid_sampler_needs_a_flat_space() -> None:
    with pytest.raises(ConfigError, match="sampler.name: .*encoding: flat"):
        parse_study_config({"name": "g", "train": "../configs/quickstart.yaml", "space": "../search_spaces/quickstart.yaml",
                            "epochs": 3, "budget": {"trials": 2}, "sampler": {"name": "grid"}}, "s.yaml", base=ROOT / "studies")


def test_flat_plasticity_delay_keeps_its_range() -> None:
    """``plasticity.after`` 2..3 with no-shrink allowed is {0, 2, 3}: a delay of 1 is never proposed."""
    data = {**yaml.safe_load(GROWBENCH.read_text()), "plasticity": {"enabled": [False, True], "after": {"low": 2, "high": 3}}}
    space = parse_space(data, "flat.yaml", epochs=6)
    assert space.grid()["plasticity.after"] == [0, 2, 3]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        t = study.ask()
        space.define_by_run(t)
        seen.add(t.params["plasticity.after"])
        study.tell(t, 0.0)
    assert seen == {0, 2, 3}
