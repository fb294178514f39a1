"""The simulated prefix cache (growsearch.search.simulate_clock.PrefixLedger) in the MOASHA and PBG
simulations: a trial is charged only the epochs after the deepest state of its schedule that
another trial had trained when it started; proposals and values do not change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from growsearch.search.runner import sampler_for
from growsearch.search.schedulers import PbgConfig
from growsearch.search.simulate import load_table
from growsearch.search.simulate_asha import simulate_asha_study
from growsearch.search.simulate_clock import PrefixLedger, SimRun, cumulative_flops, prefix_id
from growsearch.search.simulate_pbg import simulate_pbg
from growsearch.search.study import SamplerConfig

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "growbench" / "lcgrnn_bench.json.gz"
OBJ = ["dev_eer", "params", "train_flops"]


@pytest.fixture(scope="module")
def table() -> Any:
    return load_table(TABLE)


def _sampler(table: Any, seed: int, name: str = "random") -> Any:
    return sampler_for(SamplerConfig(name=name, seed=seed, population_size=None), table.space, 32)


def _shared(a: dict[str, Any], b: dict[str, Any], epochs: int) -> int:
    """Epochs two schedules share from the start: the deepest e < epochs with the same events before e."""
    def before(s: dict[str, Any], e: int) -> str:
        return json.dumps([x for x in s.get("events") or [] if int(x["epoch"]) < e], sort_keys=True)
    return max((e for e in range(1, epochs) if before(a, e) == before(b, e)), default=0)


def _run(schedule: dict[str, Any], start: float, reused: int = 0) -> SimRun:
    return SimRun(None, None, schedule, {}, start, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], reused)  # type: ignore[arg-type]


def test_ledger_states_become_available_as_trained_and_stop_with_the_trial() -> None:
    base = {"events": []}
    grown = {"events": [{"point": "gru1", "epoch": 3, "neurons": 4}]}
    ledger = PrefixLedger(6)
    ledger.add(0, _run(base, start=0.0))
    assert ledger.reusable(grown, now=2.5) == 2  # the state before epoch 3 exists from t = 3
    assert ledger.reusable(grown, now=3.0) == 3  # not 4: from epoch 4 on the schedules differ
    assert ledger.reusable(base, now=100.0) == 5  # never the last epoch's end
    ledger.stop(0, 2)  # stopped after 2 epochs: nothing later was trained
    assert ledger.reusable(grown, now=100.0) == 2
    child = _run(grown, start=10.0, reused=2)  # loaded 2 epochs: charged from there
    assert child.offset() == 2.0 and child.at(2) == 10.0 and child.at(6) == 14.0 and child.spent_by(6) == 4.0
    ledger.add(1, child)
    assert prefix_id(grown, 4) != prefix_id(base, 4) and ledger.reusable(grown, now=12.0) == 4


def test_one_worker_charges_each_trial_after_its_longest_shared_prefix(table: Any) -> None:
    """One worker: every earlier trial has finished when a trial starts, so it loads the most
    epochs it shares with any of them; proposals and values are those of the study without reuse."""
    kw: dict[str, Any] = {"objectives": OBJ, "directions": ["minimize"] * 3, "trials": 20, "seed": table.seeds[0],
                          "workers": 1, "scheduler": None}
    _, plain = simulate_asha_study(table, _sampler(table, 4), **kw)
    _, reuse = simulate_asha_study(table, _sampler(table, 4), prefix_reuse=True, **kw)
    assert [(t.number, t.key, t.values) for t in plain] == [(t.number, t.key, t.values) for t in reuse]
    epochs = table.epochs
    for i, t in enumerate(reuse):
        sched = json.loads(t.key)
        shared = max((_shared(sched, json.loads(u.key), epochs) for u in reuse[:i]), default=0)
        cum = cumulative_flops(table.rows[t.key]["seeds"][table.seeds[0]], epochs)
        assert t.spent == pytest.approx(cum[-1] - (cum[shared - 1] if shared else 0.0)), t.key
    assert sum(t.spent for t in reuse) < 0.85 * sum(t.spent for t in plain)
    assert reuse[-1].clock == pytest.approx(sum(t.spent for t in reuse))


def test_pbg_members_share_the_baseline_and_children_never_pay_for_their_parent_s_epochs(table: Any) -> None:
    cfg = PbgConfig(population=8, interval=1, quantile=0.5, min_epochs_after_growth=0)
    kw: dict[str, Any] = {"objectives": OBJ, "directions": ["minimize"] * 3, "trials": 30, "seed": table.seeds[1],
                          "workers": 2, "config": cfg, "sampler_seed": 1}
    plain = simulate_pbg(table, _sampler(table, 1), **kw)
    reuse = simulate_pbg(table, _sampler(table, 1), prefix_reuse=True, **kw)
    for t in reuse:
        cum = cumulative_flops(table.rows[t.key]["seeds"][table.seeds[1]], table.epochs)
        own = cum[(t.rung or table.epochs) - 1] - (cum[t.birth - 1] if t.birth else 0.0)
        assert 0.0 <= t.spent <= own + 1e-6
    assert sum(t.spent for t in reuse) < sum(t.spent for t in plain)
    clocks = [t.clock for t in reuse]
    assert clocks == sorted(clocks)
