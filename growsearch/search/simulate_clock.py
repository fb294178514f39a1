"""The simulated clock that the scheduler simulations share: workers spending training FLOPs.

A simulated study (:mod:`growsearch.search.simulate_asha`, :mod:`growsearch.search.simulate_pbg`)
runs trials on a pool of workers that all spend training FLOPs at the same rate, so a trial's
time is its start plus the FLOPs it has trained, and its events (a rung, a boundary, its end)
happen when it has trained that far. :class:`WorkerClock` keeps the running trials, the queue
of their next events in time order (ties: first scheduled, first served) and the FLOPs spent;
what happens at an event is the simulation's own business.

:class:`PrefixLedger` is the prefix cache of a simulated study (``prefix_reuse``, as
``execution.prefix_reuse`` live): the state at the start of epoch ``e`` of a schedule is
available once some trial whose schedule has the same events before ``e`` has trained that far
(and was not stopped before it); a trial that starts then loads the deepest such state and is
charged only the epochs after it (:meth:`SimRun.offset`). A trial does not wait for a prefix a
running trial has not reached yet (live trials do, :mod:`growsearch.train.prefix_claims`, so the
simulation saves at most what a live study saves).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna

__all__ = ["PrefixLedger", "SimRun", "WorkerClock", "cumulative_flops", "prefix_id"]


@dataclass
class SimRun:
    """A running simulated trial: its Optuna trial, reference label, schedule, table result,
    start time, cumulative training FLOPs after each epoch (of the whole schedule) and the
    epochs it did not train itself (loaded from a shared prefix or a parent's checkpoint)."""

    trial: optuna.Trial
    label: str | None
    schedule: dict[str, Any]
    res: dict[str, Any]
    start: float
    cum: list[float]
    reused: int

    def offset(self) -> float:
        """Training FLOPs of the epochs it did not train itself."""
        return self.cum[self.reused - 1] if self.reused else 0.0

    def at(self, epochs: int) -> float:
        """The time by which it has ``epochs`` epochs (its start when they were loaded)."""
        return self.start + max(0.0, self.cum[epochs - 1] - self.offset())

    def spent_by(self, epochs: int) -> float:
        """Training FLOPs it spent itself to have ``epochs`` epochs."""
        return max(0.0, self.cum[epochs - 1] - self.offset())


def cumulative_flops(res: dict[str, Any], epochs: int) -> list[float]:
    """The cumulative training FLOPs after each epoch (the table's curve; linear if it lacks one)."""
    total = float(res["train_flops"])
    curve = res.get("train_flops_curve")
    if isinstance(curve, list) and len(curve) == epochs and all(isinstance(v, int | float) for v in curve):
        return [float(v) for v in curve[:-1]] + [total]
    return [total * (e + 1) / epochs for e in range(epochs)]


@dataclass
class WorkerClock:
    """Running trials, their next events and the training FLOPs spent.

    Attributes:
        running: trial number -> its run.
        spent_done: training FLOPs of the trials that have finished (or were stopped).
    """

    running: dict[int, SimRun] = field(default_factory=dict)
    spent_done: float = 0.0
    _queue: list[tuple[float, int, int, int]] = field(default_factory=list)
    _order: int = 0

    def spent(self, now: float) -> float:
        """Training FLOPs spent by ``now``: finished trials' and what the running ones trained so far."""
        return self.spent_done + sum(now - r.start for r in self.running.values())

    def start(self, number: int, run: SimRun) -> None:
        self.running[number] = run

    def at(self, when: float, number: int, tag: int) -> None:
        """Trial ``number`` has an event ``tag`` (a rung or boundary; 0: its end) at time ``when``."""
        self._order += 1
        heapq.heappush(self._queue, (when, self._order, number, tag))

    def finish(self, number: int, spent: float) -> None:
        """Trial ``number`` ends (or is stopped) having spent ``spent`` training FLOPs."""
        self.running.pop(number)
        self.spent_done += spent

    def events(self) -> Iterator[tuple[float, Any, int]]:
        """``(time, run, tag)`` of the next event until none is left (events may be added meanwhile)."""
        while self._queue:
            now, _, number, tag = heapq.heappop(self._queue)
            yield now, self.running[number], tag


def prefix_id(schedule: dict[str, Any], epoch: int) -> str:
    """The identity of the training state at the start of ``epoch`` under ``schedule``: the
    epoch and the growth events before it (the simulated counterpart of a prefix key)."""
    events = [e for e in schedule.get("events") or [] if int(e["epoch"]) < epoch]
    return f"{epoch}:" + json.dumps(events, sort_keys=True)


@dataclass
class PrefixLedger:
    """The shared prefixes simulated trials have trained or will have trained, and when."""

    epochs: int
    _made: dict[int, dict[str, float]] = field(default_factory=dict)  # trial -> prefix id -> time available

    def reusable(self, schedule: dict[str, Any], now: float) -> int:
        """The deepest epoch whose state of ``schedule`` some trial has trained by ``now`` (0: none)."""
        for e in range(self.epochs - 1, 0, -1):
            pid = prefix_id(schedule, e)
            if any(made.get(pid, float("inf")) <= now for made in self._made.values()):
                return e
        return 0

    def add(self, number: int, run: SimRun) -> None:
        """Trial ``number`` will train the states after the epochs it loaded, each when it gets there."""
        self._made[number] = {prefix_id(run.schedule, e): run.at(e) for e in range(run.reused + 1, self.epochs)}

    def stop(self, number: int, epochs: int) -> None:
        """Trial ``number`` was stopped after ``epochs`` epochs: the later states are never trained."""
        made = self._made.get(number, {})
        for pid in [k for k in made if int(k.split(":", 1)[0]) > epochs]:
            del made[pid]
