"""Growth schedules: which growth point grows (or shrinks) by how many units, and when.

A :class:`GrowthSchedule` is frozen data. It round-trips through dicts, JSON and YAML
(``GrowthSchedule.from_dict(s.to_dict()) == s``) and is checked against a backbone's
growth points and the length of the training run by :meth:`GrowthSchedule.validate`.

Epochs are counted from 0. An event with ``epoch=e`` is applied at the boundary after
``e`` epochs of training, before epoch ``e`` runs; so ``0 <= e < epochs``.

Epoch-wide settings travel on the events of that epoch: ``freeze`` (what trains after
the event), ``optimizer_state`` (``fresh`` or ``carry`` moments) and ``lr`` (the learning
rate of the phase that starts there). Events of one epoch must agree on them.

``optimizer_state`` was called ``optimizer`` before it was told apart from the optimizer
algorithm (``training.optimizer``); files and study attributes that say ``optimizer`` are
still read, and are written back with ``optimizer_state``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from growsearch.bounds import NEURONS_MAX
from growsearch.errors import ScheduleError
from growsearch.growth.check import EventError, PointLike, check_grow, check_shrink, growth_point
from growsearch.vocabulary import FUNCTION_PRESERVING_INITS, INITS, Action, Form, Freeze, Init, OptimizerState, ShrinkRule
from growsearch.yamlio import check_kind, copy_lines, load_yaml, parse_yaml, plain, validation_message

SCHEDULE_VERSION = 1

__all__ = [  # INITS and FUNCTION_PRESERVING_INITS are re-exported from growsearch.vocabulary
    "FUNCTION_PRESERVING_INITS", "INITS", "LEGACY_OPTIMIZER_STATE_KEY", "GrowthEvent", "GrowthSchedule", "PointLike",
    "legacy_spelling", "load_schedule_items", "load_schedules", "rename_legacy_key",
]

#: The event key ``optimizer_state`` was written as before it was renamed (still read).
LEGACY_OPTIMIZER_STATE_KEY = "optimizer"


class GrowthEvent(BaseModel):
    """One growth or shrink at one growth point.

    Attributes:
        point: growth point name, as the backbone declares it.
        epoch: applied after this many epochs, before epoch ``epoch`` (0-based) trains.
        action: ``grow`` (dropin) or ``shrink`` (plasticity).
        neurons: units added (grow, > 0); units removed (shrink, > 0), or ``None`` for
            everything grown at this point so far.
        form: ``inplace`` widening or a ``parallel`` branch concatenated on channels.
        init: how new units start: ``random`` (the paper), ``zero_fanout`` or ``net2net``.
        rule: which units a shrink removes: ``appended`` (the paper) or ``magnitude``.
        freeze: after this epoch's events, ``all`` parameters train, ``new_only`` the new entries
            (new units and the consumers' new input columns) or ``new_units`` only the new
            units' own parameters (consumers' new columns stay at their init).
        optimizer_state: the optimizer rebuilt after the event starts ``fresh`` or ``carry``-ies
            moments (read from ``optimizer`` too, the key's name before the rename).
        lr: learning rate from this epoch on (``None``: keep the current one).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    point: str = Field(min_length=1)
    epoch: int = Field(ge=0)
    action: Action = "grow"
    neurons: int | None = Field(default=None, gt=0, le=NEURONS_MAX)
    form: Form = "inplace"
    init: Init = "random"
    rule: ShrinkRule = "appended"
    freeze: Freeze = "all"
    optimizer_state: OptimizerState = "fresh"
    lr: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _legacy_optimizer_key(cls, data: Any) -> Any:
        return rename_legacy_key(data, LEGACY_OPTIMIZER_STATE_KEY, "optimizer_state")

    @model_validator(mode="after")
    def _grow_needs_neurons(self) -> GrowthEvent:
        if self.action == "grow" and self.neurons is None:
            raise ValueError(f"a grow event at point {self.point!r} needs neurons > 0")
        return self

    def describe(self) -> str:
        """A short human-readable form, e.g. ``+64 gru2@3 (inplace, zero_fanout)``."""
        if self.action == "grow":
            return f"+{self.neurons} {self.point}@{self.epoch} ({self.form}, {self.init})"
        n = "all grown" if self.neurons is None else str(self.neurons)
        return f"-{n} {self.point}@{self.epoch} ({self.rule})"


class GrowthSchedule(BaseModel):
    """An ordered list of growth events. Frozen, versioned data.

    Attributes:
        version: format version, currently 1.
        events: the events, kept sorted by epoch (stable within an epoch).
        label: optional name (e.g. ``paper-dropin``) shown in reports.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = SCHEDULE_VERSION
    events: tuple[GrowthEvent, ...] = ()
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _sort(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("events") is not None:
            evs = list(data["events"])
            if all(isinstance(e, GrowthEvent) for e in evs):
                data = dict(data)
                data["events"] = tuple(sorted(evs, key=lambda e: e.epoch))
        return data

    @model_validator(mode="after")
    def _check(self) -> GrowthSchedule:
        if self.version != SCHEDULE_VERSION:
            raise ValueError(f"unsupported schedule version {self.version} (this growsearch reads {SCHEDULE_VERSION})")
        if any(a.epoch > b.epoch for a, b in zip(self.events, self.events[1:])):
            object.__setattr__(self, "events", tuple(sorted(self.events, key=lambda e: e.epoch)))
        _check_conflicts(self.events)
        return self

    # ---- construction and round trips -------------------------------------------------
    @classmethod
    def empty(cls) -> GrowthSchedule:
        return cls()

    @classmethod
    def of(cls, events: Iterable[GrowthEvent | Mapping[str, Any]], label: str | None = None) -> GrowthSchedule:
        return cls.from_dict({"events": [e.model_dump() if isinstance(e, GrowthEvent) else dict(e) for e in events], "label": label})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": self.version, "events": [_event_dict(e) for e in self.events]}
        if self.label is not None:
            d["label"] = self.label
        return d

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "schedule") -> GrowthSchedule:
        """Build from a dict (as written by :meth:`to_dict`).

        Raises:
            ScheduleError: a key is unknown, a value is out of range or events conflict.
        """
        if data is None:
            data = {}
        if isinstance(data, list):
            data = {"events": data}
        if not isinstance(data, Mapping):
            raise ScheduleError(f"{source}: expected a mapping with 'events', got {type(data).__name__}")
        data = copy_lines(data, dict(data))
        if isinstance(data.get("events"), list):
            evs = data["events"]

            def epoch_of(i: int) -> int:
                ev = evs[i]
                return ev.get("epoch", 0) if isinstance(ev, Mapping) and isinstance(ev.get("epoch", 0), int) else 0

            order = sorted(range(len(evs)), key=epoch_of)
            data["events"] = copy_lines(evs, [evs[i] for i in order], order)
        try:
            return cls.model_validate(plain(data))
        except pydantic.ValidationError as exc:
            raise ScheduleError(validation_message(exc, source, data, cls)) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def key_json(self) -> str:
        """Canonical JSON in the :func:`legacy_spelling`, for keys that must not change with it."""
        return json.dumps(legacy_spelling(self.to_dict()), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "schedule") -> GrowthSchedule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScheduleError(f"{source}:{exc.lineno}: malformed JSON: {exc.msg}") from None
        return cls.from_dict(data, source=source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "schedule") -> GrowthSchedule:
        return cls.from_dict(parse_yaml(text, source, error=ScheduleError), source=source)

    @classmethod
    def load(cls, path: str | Path) -> GrowthSchedule:
        """Read a schedule file (YAML or JSON). A file exported by ``growsearch export``
        holds several schedules under ``schedules:``; the first is taken (see
        :func:`growsearch.schedule.load_schedules` for all)."""
        scheds = load_schedules(path)
        return scheds[0]

    # ---- queries ----------------------------------------------------------------------
    def due(self, epoch: int) -> tuple[GrowthEvent, ...]:
        """Events applied at the boundary before ``epoch`` trains."""
        return tuple(e for e in self.events if e.epoch == epoch)

    @property
    def epochs_with_events(self) -> tuple[int, ...]:
        return tuple(sorted({e.epoch for e in self.events}))

    @property
    def first_epoch(self) -> int | None:
        return self.events[0].epoch if self.events else None

    def validate_for(self, points: Mapping[str, PointLike], epochs: int, *, source: str = "schedule") -> GrowthSchedule:
        """Check the schedule against a backbone's growth points and a run of ``epochs``.

        Raises:
            ScheduleError: unknown point (listing the valid ones), unsupported form or
                init, epoch outside the run, shrinking more than was grown, or an
                ``appended`` shrink after a ``net2net`` growth at the same point (it would
                not restore the model: the split fan-out is not folded back).
        """
        grown: dict[str, int] = {}
        split_by: dict[str, int] = {}  # point -> the event that grew it with net2net (still grown)
        for i, e in enumerate(self.events):
            where = f"{source}: events[{i}]"
            try:
                p = growth_point(points, e.point)
                if not 0 <= e.epoch < epochs:
                    raise EventError("epoch", f"epoch {e.epoch} is outside the training run (0..{epochs - 1} for {epochs} epochs)")
                if e.action == "grow":
                    check_grow(p, e.neurons, e.form, e.init)
                    grown[e.point] = grown.get(e.point, 0) + int(e.neurons or 0)
                    if e.init == "net2net":
                        split_by.setdefault(e.point, i)
                    continue
                have = grown.get(e.point, 0)
                check_shrink(p, e.neurons, e.rule, have)
            except EventError as exc:
                raise ScheduleError(f"{where}.{exc.field}: {exc}") from None
            if e.rule == "appended" and e.point in split_by:
                raise ScheduleError(
                    f"{where}.rule: an appended shrink of {e.point!r} after its net2net growth (events[{split_by[e.point]}]) "
                    "is refused: net2net split existing units and divided their fan-out, and removing the copies does "
                    "not fold it back, so the model is not restored; grow with init zero_fanout or random, or shrink "
                    "with rule magnitude")
            grown[e.point] = have - (have if e.neurons is None else e.neurons)
            if grown[e.point] == 0:
                split_by.pop(e.point, None)
        return self

    def total_grown(self) -> dict[str, int]:
        """Net units grown per point at the end of the schedule (shrink ``None`` = back to 0)."""
        out: dict[str, int] = {}
        for e in self.events:
            if e.action == "grow":
                out[e.point] = out.get(e.point, 0) + int(e.neurons or 0)
            else:
                out[e.point] = 0 if e.neurons is None else out.get(e.point, 0) - e.neurons
        return out


def rename_legacy_key(data: Any, old: str, new: str) -> Any:
    """``data`` with the key ``old`` renamed to ``new`` (a copy; ``data`` itself is left alone).

    Raises:
        ValueError: both keys are given with different values.
    """
    if not isinstance(data, Mapping) or old not in data:
        return data
    out = copy_lines(data, {k: v for k, v in data.items() if k != old})
    if new in data and data[new] != data[old]:
        raise ValueError(f"{old!r} (the old name of {new!r}) is {data[old]!r} but {new!r} is {data[new]!r}; give only {new!r}")
    out[new] = data[old] if new not in data else data[new]
    return out


def legacy_spelling(data: Any) -> Any:
    """``data`` (a schedule dict, a search-space dump, or lists and dicts holding them) with
    ``optimizer_state`` spelled ``optimizer``, as it was before the rename.

    Hashes are computed from this spelling (a study's ``config_hash``, a run's resume key), so
    that studies and checkpoints made before the rename still match their configs.
    """
    if isinstance(data, Mapping):
        return {(LEGACY_OPTIMIZER_STATE_KEY if k == "optimizer_state" else k): legacy_spelling(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [legacy_spelling(v) for v in data]
    return data


def _event_dict(e: GrowthEvent) -> dict[str, Any]:
    d = e.model_dump()
    if d.get("lr") is None:
        d.pop("lr", None)
    return d


def _check_conflicts(events: tuple[GrowthEvent, ...]) -> None:
    by_epoch: dict[int, list[tuple[int, GrowthEvent]]] = {}
    for i, e in enumerate(events):
        by_epoch.setdefault(e.epoch, []).append((i, e))
    for epoch, evs in by_epoch.items():
        seen: dict[str, int] = {}
        for i, e in evs:
            if e.point in seen:
                raise ValueError(f"events[{seen[e.point]}] and events[{i}] both change point {e.point!r} at epoch {epoch}; merge them into one event")
            seen[e.point] = i
        for attr in ("freeze", "optimizer_state", "lr"):
            vals = {getattr(e, attr) for _, e in evs}
            if attr == "lr":
                vals.discard(None)
            if len(vals) > 1:
                raise ValueError(f"events at epoch {epoch} disagree on {attr}: {sorted(map(str, vals))}; events of one epoch share one phase")


def load_schedules(path: str | Path) -> list[GrowthSchedule]:
    """Read one schedule, or the list under ``schedules:`` of an exported file.

    Raises:
        ScheduleError: the file is missing, malformed or holds an invalid schedule.
    """
    return [sched for sched, _ in load_schedule_items(path)]


def load_schedule_items(path: str | Path) -> list[tuple[GrowthSchedule, dict[str, Any]]]:
    """Like :func:`load_schedules`, with each schedule's metadata.

    For an exported file (``schedules:`` items holding ``schedule:``), the metadata is the
    item without ``schedule`` (``trial``, ``seed``, ``reference``, ``values``, ``metrics``...);
    for a plain schedule file or a bare item it is ``{}``.

    Raises:
        ScheduleError: the file is missing, malformed or holds an invalid schedule.
    """
    from growsearch.errors import ConfigError

    try:
        data = load_yaml(path, what="schedule file")  # JSON is YAML
    except ConfigError as exc:
        raise ScheduleError(str(exc)) from None
    src = str(path)
    try:
        if not (isinstance(data, Mapping) and "schedule" in data):  # a file holding ``schedule:`` (e.g. a training config) is fine
            check_kind(data, src, "growth schedule")
    except ConfigError as exc:
        raise ScheduleError(str(exc)) from None
    if isinstance(data, Mapping) and "schedules" in data:
        items = data["schedules"]
        if not isinstance(items, list) or not items:
            raise ScheduleError(f"{src}: schedules: expected a non-empty list")
        out = []
        for i, item in enumerate(items):
            has_meta = isinstance(item, Mapping) and "schedule" in item
            sched = item["schedule"] if has_meta else item
            meta = {str(k): v for k, v in item.items() if k != "schedule"} if has_meta else {}
            out.append((GrowthSchedule.from_dict(sched, source=f"{src}: schedules[{i}]"), meta))
        return out
    if isinstance(data, Mapping) and "schedule" in data and "events" not in data:
        data = data["schedule"]
    return [(GrowthSchedule.from_dict(data, source=src), {})]
