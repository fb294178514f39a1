"""Growth schedules as timelines: how many extra units each growth point carries, when.

A schedule is a list of events; for a report we want, per growth point, the intervals of
training epochs during which the point is wider than the base model and by how much, plus
the events themselves (grow ``+n`` / shrink ``-n``). Epochs are 0-based and an event at
epoch ``e`` applies before epoch ``e`` trains, so a grow at ``e`` followed by a shrink at
``s`` gives the interval ``[e, s)``; an interval with no later event ends at the run's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from growsearch.schedule import GrowthSchedule


@dataclass(frozen=True)
class Segment:
    """``point`` carries ``extra`` units above its base width for epochs ``start .. end-1``."""

    point: str
    start: int
    end: int
    extra: int


@dataclass(frozen=True)
class Mark:
    """One event: ``delta`` units (negative for a shrink) at ``point`` before ``epoch``."""

    point: str
    epoch: int
    action: str
    delta: int
    label: str


@dataclass(frozen=True)
class Timeline:
    """A schedule laid out over ``epochs`` epochs."""

    epochs: int
    segments: tuple[Segment, ...]
    marks: tuple[Mark, ...]

    @property
    def points(self) -> list[str]:
        """Growth points in order of their first event."""
        seen: dict[str, None] = {}
        for m in self.marks:
            seen.setdefault(m.point, None)
        return list(seen)


def schedule_timeline(schedule: GrowthSchedule | dict[str, Any] | None, epochs: int | None = None) -> Timeline:
    """Lay a schedule out as segments and marks.

    Args:
        schedule: a :class:`GrowthSchedule` or its dict (``None``/empty: no growth).
        epochs: length of the run; default: one past the last event.

    Raises:
        ScheduleError: the dict is not a valid schedule.
    """
    if schedule is None:
        sched = GrowthSchedule()
    elif isinstance(schedule, GrowthSchedule):
        sched = schedule
    else:
        sched = GrowthSchedule.from_dict(schedule)
    last = max((e.epoch for e in sched.events), default=-1)
    n_epochs = max(int(epochs) if epochs is not None else 0, last + 1)
    extra: dict[str, int] = {}
    since: dict[str, int] = {}
    segments: list[Segment] = []
    marks: list[Mark] = []
    for e in sched.events:
        before = extra.get(e.point, 0)
        if e.action == "grow":
            after = before + int(e.neurons or 0)
        else:
            after = 0 if e.neurons is None else before - e.neurons
        if before > 0 and since[e.point] < e.epoch:
            segments.append(Segment(e.point, since[e.point], e.epoch, before))
        extra[e.point] = after
        since[e.point] = e.epoch
        marks.append(Mark(e.point, e.epoch, e.action, after - before, e.describe()))
    for point, n in extra.items():
        if n > 0 and since[point] < n_epochs:
            segments.append(Segment(point, since[point], n_epochs, n))
    segments.sort(key=lambda s: (s.start, s.point))
    return Timeline(epochs=n_epochs, segments=tuple(segments), marks=tuple(marks))


def run_epochs(curves: dict[str, Any] | None, config: dict[str, Any] | None = None) -> int | None:
    """Length of a run: the length of its ``dev_eer`` curve, else the study config's
    ``training.epochs`` / ``train.epochs`` / ``epochs``, else ``None``."""
    if curves:
        for key in ("dev_eer", "train_loss", "params"):
            c = curves.get(key)
            if isinstance(c, list) and c:
                return len(c)
    if isinstance(config, dict):
        for sect in ("training", "train"):
            s = config.get(sect)
            if isinstance(s, dict) and isinstance(s.get("epochs"), int):
                return int(s["epochs"])
        if isinstance(config.get("epochs"), int):
            return int(config["epochs"])
    return None
