"""Simulated search on a GrowBench table: a sampler proposes, the table answers.

A GrowBench table (``bench/growbench.py export``: gzip JSON, format ``growbench/1``) holds,
for every schedule of a discrete growth space, the results of training it with several
seeds. :func:`simulate` runs a study against it instead of training (the idea of Syne
Tune's simulated back-end): the trial proposals go through the live searcher's own propose
step (:func:`growsearch.search.propose.propose`: ask, define-by-run, decode, duplicates
refused) with the sampler the study config would build
(:func:`growsearch.search.runner.sampler_for`, reseeded per trial), and each trial is told
the table's values for one training seed. A simulated clock counts the cumulative training
FLOPs of the trials run so far, so hypervolume can be read against compute, not trials.

Many sampler seeds run in seconds (in-memory Optuna storage, no training, no Ray).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from growsearch.errors import ConfigError
from growsearch.schedule import GrowthSchedule
from growsearch.search import optuna_private as op
from growsearch.search.attrs import TRIAL_FAIL_REASON, TRIAL_REFERENCE, TRIAL_SCHEDULE
from growsearch.search.propose import Proposal, find_twin, propose
from growsearch.search.space import SearchSpace, parse_space
from growsearch.vocabulary import Direction

__all__ = ["FORMAT", "SimTrial", "Table", "TableStudy", "load_table", "row_key", "simulate"]

#: The table format this module reads (written by ``bench/growbench.py export``).
FORMAT = "growbench/1"
#: Repeated proposals in a row before a simulated study gives up (as the live searcher).
MAX_REPEATS = 25


def row_key(schedule: GrowthSchedule | dict[str, Any]) -> str:
    """A schedule's key in a table: canonical JSON without its label."""
    d = (schedule if isinstance(schedule, GrowthSchedule) else GrowthSchedule.from_dict(schedule)).to_dict()
    d.pop("label", None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclass
class Table:
    """A loaded GrowBench table: the bound space, and rows by :func:`row_key`."""

    data: dict[str, Any]
    space: SearchSpace
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[str]:
        return [str(s) for s in self.data["provenance"]["seeds"]]

    @property
    def epochs(self) -> int:
        return int(self.data["epochs"])

    def result(self, schedule: GrowthSchedule, seed: str) -> dict[str, Any] | None:
        """The table's result for ``schedule`` trained with ``seed``, or ``None``."""
        row = self.rows.get(row_key(schedule))
        return None if row is None else row["seeds"].get(str(seed))

    def baseline(self) -> dict[str, Any] | None:
        return next((r for r in self.rows.values() if r.get("reference") == "baseline"), None)


def table_from_data(data: dict[str, Any], source: str = "table") -> Table:
    if data.get("format") != FORMAT:
        raise ConfigError(f"{source}: not a {FORMAT} table (format {data.get('format')!r})")
    space = parse_space(data["space"], f"{source}: space", epochs=int(data["epochs"]))
    return Table(data, space, {row_key(r["schedule"]): r for r in data["rows"]})


def load_table(path: str | Path) -> Table:
    """Read a GrowBench table (gzip JSON) and bind its space.

    Raises:
        ConfigError: not a table of this format, or its space does not bind.
    """
    try:
        with gzip.open(path, "rt") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read a GrowBench table: {exc}") from None
    return table_from_data(data, str(path))


@dataclass(frozen=True)
class SimTrial:
    """One simulated trial: its number, parameters, schedule key, values and the clock."""

    number: int
    label: str | None
    params: dict[str, Any]
    key: str
    values: list[float]
    clock: float  # cumulative training FLOPs after this trial


class TableStudy:
    """An in-memory study answered from a table (what both simulators share).

    The table's reference rows are enqueued first (parameterless, with their schedule, as a
    live study enqueues references); :meth:`next` proposes through the live searcher's own
    propose step (a repeated schedule failed as a duplicate and another asked) and looks the
    schedule up for the training seed ``seed``. A schedule the table lacks is failed and
    another asked; more than ``10 x trials`` of them means the wrong table for the space.
    """

    def __init__(self, table: Table, sampler: optuna.samplers.BaseSampler, *, directions: Sequence[Direction],
                 references: Sequence[str], space: SearchSpace, seed: str, trials: int) -> None:
        self.table, self.space, self.seed, self.trials = table, space, seed, trials
        self.study = optuna.create_study(storage=InMemoryStorage(), sampler=sampler, directions=list(directions))
        for label in references:
            row = next((r for r in table.rows.values() if r.get("reference") == label), None)
            if row is None:
                raise ConfigError(f"reference {label!r}: the table has no such row")
            self.study.enqueue_trial({}, user_attrs={TRIAL_REFERENCE.key: label, TRIAL_SCHEDULE.key: row["schedule"]},
                                     skip_if_exists=False)
        self.misses = 0

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        storage = op.storage_of(self.study)
        storage.set_trial_user_attr(op.trial_id_of(trial), TRIAL_FAIL_REASON.key, reason)
        storage.set_trial_state_values(op.trial_id_of(trial), state=TrialState.FAIL)

    def _reject(self, trial: optuna.Trial, twin: tuple[int, str]) -> None:
        self.fail(trial, f"duplicate schedule: trial {twin[0]} ({twin[1]}) has the same schedule; not trained")

    def next(self) -> tuple[Proposal, dict[str, Any]] | None:
        """The next proposal the table has, with its row for ``seed``; ``None``: the space looks exhausted."""
        study, space = self.study, self.space
        while True:
            p = propose(study.ask, space, reject=self._reject, max_repeats=MAX_REPEATS,
                        twin=lambda t, s, a: find_twin(study, space, t, s, enqueued=bool(op.fixed_params_of(t))))
            if p is None:
                return None
            res = self.table.result(p.schedule, self.seed)
            if res is not None:
                return p, res
            self.misses += 1
            self.fail(p.trial, "not in the table")
            if self.misses > 10 * self.trials:
                raise ConfigError("the table lacks most schedules this space proposes (wrong table for the space?)")


def simulate(table: Table, sampler: optuna.samplers.BaseSampler, *, objectives: Sequence[str],
             directions: Sequence[Direction], trials: int, seed: str, references: Sequence[str] = ("baseline",),
             space: SearchSpace | None = None) -> list[SimTrial]:
    """Run a study of ``trials`` COMPLETE trials against ``table`` with ``sampler``.

    Args:
        table: the GrowBench table.
        sampler: the study's sampler (``runner.sampler_for``).
        objectives: metric names, in the study's order; ``directions`` theirs.
        trials: the budget of COMPLETE trials (references included, as in a live study).
        seed: the table's training seed whose results the trials are told.
        references: labels of table rows enqueued first (``baseline``).
        space: the space to propose from (default: the table's).

    Returns:
        The COMPLETE trials in order. A schedule the table lacks is failed (not counted).
    """
    space = space or table.space
    sim = TableStudy(table, sampler, directions=directions, references=references, space=space, seed=seed, trials=trials)
    out: list[SimTrial] = []
    clock = 0.0
    while len(out) < trials:
        found = sim.next()
        if found is None:
            break  # the space looks exhausted, as a live study would conclude
        p, res = found
        values = [float(res[name]) for name in objectives]
        clock += float(res["train_flops"])
        sim.study.tell(p.trial, values)
        out.append(SimTrial(p.trial.number, p.label, p.params, row_key(p.schedule), values, clock))
    return out
