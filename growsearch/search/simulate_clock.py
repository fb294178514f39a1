"""The simulated clock that the scheduler simulations share: workers spending training FLOPs.

A simulated study (:mod:`growsearch.search.simulate_asha`, :mod:`growsearch.search.simulate_pbg`)
runs trials on a pool of workers that all spend training FLOPs at the same rate, so a trial's
time is its start plus the FLOPs it has trained, and its events (a rung, a boundary, its end)
happen when it has trained that far. :class:`WorkerClock` keeps the running trials, the queue
of their next events in time order (ties: first scheduled, first served) and the FLOPs spent;
what happens at an event is the simulation's own business.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna

__all__ = ["SimRun", "WorkerClock", "cumulative_flops"]


@dataclass
class SimRun:
    """A running simulated trial: its Optuna trial, reference label, schedule, table result,
    start time and cumulative training FLOPs after each epoch (of the whole schedule)."""

    trial: optuna.Trial
    label: str | None
    schedule: dict[str, Any]
    res: dict[str, Any]
    start: float
    cum: list[float]


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
