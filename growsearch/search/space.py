"""Search spaces: which growth schedules a study may try, as a define-by-run function.

A search space is YAML (``search_spaces/*.yaml``) read into a frozen :class:`SearchSpace`::

    backbone: lcgrnn
    events: {min: 0, max: 2}              # how many growth events
    epoch: {low: 1, high: 3}              # when (0-based epoch boundary)
    points:                               # where, and how much (neurons per event)
      gru2: {neurons: {low: 16, high: 128, step: 16}}
      gru1: {neurons: {low: 8, high: 64, log: true}}
    forms: [inplace]                      # intersected with what each point supports
    inits: [random, zero_fanout, net2net]
    freeze: [all, new_only]               # what trains after an event (also new_units)
    optimizer_state: [fresh, carry]       # optimizer rebuilt fresh or with carried moments
                                          # (``optimizer:`` in spaces written before the rename)
    lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # learning rate of the phase an event starts
    plasticity:                           # grow, train, shrink back
      enabled: [false, true]
      after: {low: 1, high: 2}            # epochs between the last growth and the shrink
      rules: [appended, magnitude]
      lr: {low: 1.0e-5, high: 1.0e-3, log: true}

:meth:`SearchSpace.define_by_run` only calls ``trial.suggest_*`` (conditional parameters
are used: ``ev0.point`` picks which ``ev0.<point>.neurons`` exists). A worker rebuilds the
schedule from the parameters with :meth:`SearchSpace.decode`, which always returns a
schedule that validates for the backbone and the run; impossible combinations are
repaired deterministically:

- two events at the same point and epoch are merged (neurons summed, the first one's
  settings kept);
- events of one epoch share one phase: the lowest-numbered event of that epoch sets
  ``freeze``, ``optimizer_state`` and ``lr`` for all of them;
- neurons are rounded up to the point's ``step`` (e.g. one attention head);
- the plasticity shrink happens ``after`` epochs after the last growth, clamped to the last
  epoch; if no epoch is left after the last growth there is no shrink.

**Encodings.** ``encoding: conditional`` (the default) is the define-by-run above: a
parameter exists only when the choices before it need it (``ev0.<point>.neurons`` only for
the point picked). ``encoding: flat`` suggests the same fixed set of parameters for every
trial, so that the space is a plain product of finite choices that Optuna's ``GridSampler``
can enumerate (:meth:`SearchSpace.grid`) and that model-based samplers see without
conditional holes:

- ``ev<i>.point``; ``ev<i>.size``: the index of the amount in the point's ``neurons`` values
  (every point must offer as many amounts); ``ev<i>.form`` and ``ev<i>.init`` shared by
  all points (every point must support every form and init listed);
- ``plasticity.after``: 0 means no shrink (when ``false`` is among ``plasticity.enabled``),
  otherwise the epochs between the last growth and the shrink; ``plasticity.rule`` always;
- ``n_events`` and the events up to ``events.max`` are always suggested; events at or past
  ``n_events`` are unused (``events.min == events.max`` avoids such unused dimensions).

:meth:`SearchSpace.to_conditional` turns flat parameters into the conditional ones they
stand for, and :meth:`SearchSpace.decode` accepts either, so both encodings of one
schedule decode identically. ``lr`` ranges are continuous: a flat space with ``lr`` cannot be
enumerated as a grid.

The choice lists are checked against the growth vocabulary (:mod:`growsearch.vocabulary`)
and, by :meth:`SearchSpace.bind`, against the backbone with the same event check as a
schedule (:mod:`growsearch.growth.check`). The trial parameter of an event's
``optimizer_state`` keeps its name from before the rename, ``ev<i>.optimizer``, so that the
parameters of existing studies still decode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from growsearch.bounds import NEURONS_MAX
from growsearch.errors import ConfigError, ScheduleError
from growsearch.growth.check import EventError, PointLike, check_form, check_init, check_rule, growth_point
from growsearch.schedule import LEGACY_OPTIMIZER_STATE_KEY, GrowthEvent, GrowthSchedule, rename_legacy_key
from growsearch.vocabulary import Form, Freeze, Init, OptimizerState, ShrinkRule
from growsearch.yamlio import load_yaml, parse_model

__all__ = ["ENCODINGS", "FloatRange", "IntRange", "PointSpace", "SearchSpace", "load_space"]

#: How a space spells a schedule as trial parameters (see the module docstring).
Encoding = Literal["conditional", "flat"]
ENCODINGS: tuple[str, ...] = ("conditional", "flat")

#: The trial parameter suffix of an event's ``optimizer_state`` (its name before the rename).
_OPTIMIZER_STATE_PARAM = "optimizer"


class IntRange(BaseModel):
    """An integer range ``low..high`` (inclusive), with a ``step`` or on a ``log`` scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: int = Field(ge=-NEURONS_MAX, le=NEURONS_MAX)
    high: int = Field(ge=-NEURONS_MAX, le=NEURONS_MAX)
    step: int = Field(default=1, gt=0, le=NEURONS_MAX)
    log: bool = False

    def values(self) -> list[int]:
        """Every value of the range, in order (what ``_suggest_int`` may return)."""
        if self.log:
            return list(range(self.low, self.high + 1))
        return list(range(self.low, self.high + 1, self.step))

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.step != 1:
            raise ValueError("a log range cannot have a step other than 1")
        if self.log and self.low < 1:
            raise ValueError(f"a log range needs low >= 1 (got low {self.low})")
        return self


class FloatRange(BaseModel):
    """A float range ``low..high`` (inclusive), optionally on a ``log`` scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("bounds must be finite")
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low {self.low})")
        return self


class CountRange(BaseModel):
    """How many growth events a schedule has: ``min..max``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: int = Field(default=0, ge=0)
    max: int = Field(default=1, ge=0, le=16)

    @model_validator(mode="after")
    def _check(self) -> CountRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


class PointSpace(BaseModel):
    """One growth point a schedule may use.

    Attributes:
        neurons: units added per event at this point.
        forms: overrides the space's ``forms`` here (``None``: use the space's).
        inits: overrides the space's ``inits`` here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    neurons: IntRange
    forms: tuple[Form, ...] | None = None
    inits: tuple[Init, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> PointSpace:
        if self.neurons.low < 1:
            raise ValueError(f"neurons.low must be >= 1 (got {self.neurons.low})")
        return self


class PlasticitySpace(BaseModel):
    """Whether, when and how grown units are shrunk back (the paper's plasticity).

    Attributes:
        enabled: choices for "shrink back at all" (``[false]``, ``[true]`` or both).
        after: epochs between the last growth event and the shrink.
        rules: shrink rules to choose from.
        lr: learning rate of the phase after the shrink (``None``: keep the current one).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: tuple[bool, ...] = (False, True)
    after: IntRange = IntRange(low=1, high=1)
    rules: tuple[ShrinkRule, ...] = ("appended",)
    lr: FloatRange | None = None

    @model_validator(mode="after")
    def _check(self) -> PlasticitySpace:
        if not self.enabled:
            raise ValueError("enabled: needs at least one choice (false, true)")
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError(f"enabled: duplicate choices {list(self.enabled)}")
        if not self.rules:
            raise ValueError("rules: needs at least one rule (appended, magnitude)")
        if self.after.low < 1:
            raise ValueError(f"after.low must be >= 1 (got {self.after.low})")
        return self


class SearchSpace(BaseModel):
    """The growth knobs of one backbone (see the module docstring for the YAML).

    Use :func:`load_space` to read and check one against its backbone and run length;
    then :meth:`define_by_run` (driver) and :meth:`decode` (worker).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str
    preset: str | None = None
    description: str = ""
    encoding: Encoding = "conditional"
    events: CountRange = CountRange()
    epoch: IntRange
    points: dict[str, PointSpace] = Field(default_factory=dict)
    forms: tuple[Form, ...] = ("inplace",)
    inits: tuple[Init, ...] = ("random",)
    freeze: tuple[Freeze, ...] = ("all",)
    optimizer_state: tuple[OptimizerState, ...] = ("fresh",)
    lr: FloatRange | None = None
    plasticity: PlasticitySpace | None = None

    # Filled by :meth:`bind`: the backbone's growth points and the run length.
    _points: dict[str, PointLike] | None = PrivateAttr(default=None)
    _epochs: int | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _legacy_optimizer_key(cls, data: Any) -> Any:
        return rename_legacy_key(data, LEGACY_OPTIMIZER_STATE_KEY, "optimizer_state")

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        if self.epoch.low < 0:
            raise ValueError(f"epoch.low must be >= 0 (got {self.epoch.low})")
        if self.events.max > 0 and not self.points:
            raise ValueError("points: a space with events.max > 0 needs at least one growth point")
        for key in ("forms", "inits", "freeze", "optimizer_state"):
            vals = getattr(self, key)
            if not vals:
                raise ValueError(f"{key}: needs at least one choice")
            if len(set(vals)) != len(vals):
                raise ValueError(f"{key}: duplicate choices {list(vals)}")
        return self

    # ---- binding to a backbone and a run --------------------------------------------------
    def bind(self, points: Mapping[str, PointLike], epochs: int, *, source: str = "search space") -> SearchSpace:
        """Check this space against a backbone's growth points and a run of ``epochs``.

        Returns a copy that remembers both (needed by :meth:`define_by_run` and :meth:`decode`).

        Raises:
            ConfigError: unknown growth point (listing the valid ones), no supported form,
                init or shrink rule left at a point, net2net with an ``appended`` plasticity
                shrink (see :meth:`GrowthSchedule.validate_for`), or an epoch range beyond the run.
        """
        for name in self.points:
            try:
                growth_point(points, name)
            except EventError as exc:
                raise ConfigError(f"{source}: points.{name}: {exc}") from None
        for name in self.points:
            p = points[name]
            forms = self._choices(name, "forms", p)
            if not forms:
                _refuse(source, f"points.{name}.forms", partial(check_form, p), self.points[name].forms or self.forms)
            for form in forms:
                if not self._init_choices(name, form, p):
                    hint = f" (or drop {form!r} from forms)" if len(forms) > 1 else ""
                    _refuse(source, f"points.{name}.inits", partial(check_init, p, form), self.points[name].inits or self.inits, hint)
            if (self.plasticity is not None and True in self.plasticity.enabled and "appended" in self.plasticity.rules
                    and any("net2net" in self._init_choices(name, f, p) for f in forms)):
                raise ConfigError(
                    f"{source}: inits: net2net at {name!r} together with plasticity (rule appended) is refused: an "
                    "appended shrink removes net2net's copies without folding their split fan-out back, so it does not "
                    "restore the model (README, growth schedules); drop net2net from inits, or appended from plasticity.rules"
                )
            if self.plasticity is not None and True in self.plasticity.enabled:
                if not [r for r in self.plasticity.rules if r in p.shrink_rules]:
                    _refuse(source, "plasticity.rules", partial(check_rule, p), self.plasticity.rules)
        if epochs < 1:
            raise ConfigError(f"{source}: the run has {epochs} epochs; it needs at least 1")
        if self.events.max > 0 and self.epoch.high > epochs - 1:
            raise ConfigError(
                f"{source}: epoch.high: {self.epoch.high} is beyond the run "
                f"(growth epochs are 0..{epochs - 1} for {epochs} epochs)"
            )
        if self.encoding == "flat":
            self._check_flat(points, source)
        copy = self.model_copy()
        copy._points = dict(points)
        copy._epochs = int(epochs)
        return copy

    def _check_flat(self, points: Mapping[str, PointLike], source: str) -> None:
        """A flat space needs the same number of amounts at every point and every listed form
        and init supported everywhere (the flat parameters have one set of choices)."""
        sizes = {name: len(ps.neurons.values()) for name, ps in self.points.items()}
        if len(set(sizes.values())) > 1:
            raise ConfigError(f"{source}: points: encoding flat needs the same number of neuron amounts at every point; got "
                              + ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items())))
        for name, ps in self.points.items():
            if ps.forms is not None or ps.inits is not None:
                raise ConfigError(f"{source}: points.{name}: encoding flat takes forms and inits from the space, not per point")
            p = points[name]
            for form in self.forms:
                if form not in p.forms:
                    raise ConfigError(f"{source}: forms: encoding flat needs every point to support {form!r}; {name} does not")
                for init in self.inits:
                    if init not in p.inits_for(form):
                        raise ConfigError(f"{source}: inits: encoding flat needs every point to support {init!r} "
                                          f"with form {form!r}; {name} does not")
        if self.plasticity is not None and True in self.plasticity.enabled:
            for name in self.points:
                missing = [r for r in self.plasticity.rules if r not in points[name].shrink_rules]
                if missing:
                    raise ConfigError(f"{source}: plasticity.rules: encoding flat needs every point to support "
                                      f"{missing[0]!r}; {name} does not")

    @property
    def epochs(self) -> int:
        if self._epochs is None:
            raise RuntimeError("SearchSpace is not bound to a run; call bind() or load_space(..., epochs=...)")
        return self._epochs

    @property
    def growth_points(self) -> dict[str, PointLike]:
        if self._points is None:
            raise RuntimeError("SearchSpace is not bound to a backbone; call bind() or load_space(...)")
        return self._points

    def _choices(self, point: str, key: str, p: PointLike) -> tuple[str, ...]:
        listed = getattr(self.points[point], key) or getattr(self, key)
        return tuple(v for v in listed if v in getattr(p, key))

    def _init_choices(self, point: str, form: str, p: PointLike) -> tuple[str, ...]:
        """The space's inits at ``point`` that the backbone allows with ``form``."""
        allowed = p.inits_for(form)
        return tuple(i for i in self._choices(point, "inits", p) if i in allowed)

    def _init_key(self, i: int, point: str, p: PointLike) -> Callable[[str], str]:
        """Parameter name of event ``i``'s init: per form when the allowed inits differ by form
        (so that every name has one fixed set of choices)."""
        forms = self._choices(point, "forms", p)
        per_form = len({self._init_choices(point, f, p) for f in forms}) > 1
        return (lambda f: f"ev{i}.{point}.{f}.init") if per_form else (lambda f: f"ev{i}.{point}.init")

    # ---- the driver side: define-by-run ---------------------------------------------------
    def define_by_run(self, trial: Any) -> None:
        """Suggest one schedule's parameters on an Optuna trial (only ``trial.suggest_*``)."""
        if self.encoding == "flat":
            self._define_flat(trial)
            return
        pts = self.growth_points
        n = _suggest_int(trial, "n_events", IntRange(low=self.events.min, high=self.events.max))
        names = sorted(self.points)
        for i in range(n):
            point = trial.suggest_categorical(f"ev{i}.point", names)
            ps = self.points[point]
            _suggest_int(trial, f"ev{i}.{point}.neurons", ps.neurons)
            _suggest_int(trial, f"ev{i}.epoch", self.epoch)
            form = trial.suggest_categorical(f"ev{i}.{point}.form", list(self._choices(point, "forms", pts[point])))
            trial.suggest_categorical(self._init_key(i, point, pts[point])(form), list(self._init_choices(point, form, pts[point])))
            trial.suggest_categorical(f"ev{i}.freeze", list(self.freeze))
            trial.suggest_categorical(f"ev{i}.{_OPTIMIZER_STATE_PARAM}", list(self.optimizer_state))
            if self.lr is not None:
                trial.suggest_float(f"ev{i}.lr", self.lr.low, self.lr.high, log=self.lr.log)
        if n > 0 and self.plasticity is not None:
            pl = self.plasticity
            on = trial.suggest_categorical("plasticity", list(pl.enabled))
            if on:
                _suggest_int(trial, "plasticity.after", pl.after)
                trial.suggest_categorical("plasticity.rule", list(pl.rules))
                if pl.lr is not None:
                    trial.suggest_float("plasticity.lr", pl.lr.low, pl.lr.high, log=pl.lr.log)

    def _flat_choices(self) -> dict[str, list[Any]]:
        """The flat parameters and their choices, in suggestion order (``lr`` ranges aside)."""
        out: dict[str, list[Any]] = {"n_events": IntRange(low=self.events.min, high=self.events.max).values()}
        names = sorted(self.points)
        n_sizes = len(self.points[names[0]].neurons.values()) if names else 0
        for i in range(self.events.max):
            out[f"ev{i}.point"] = list(names)
            out[f"ev{i}.size"] = list(range(n_sizes))
            out[f"ev{i}.epoch"] = self.epoch.values()
            out[f"ev{i}.form"] = list(self.forms)
            out[f"ev{i}.init"] = list(self.inits)
            out[f"ev{i}.freeze"] = list(self.freeze)
            out[f"ev{i}.{_OPTIMIZER_STATE_PARAM}"] = list(self.optimizer_state)
        pl = self.plasticity
        if self.events.max > 0 and pl is not None and True in pl.enabled:
            out["plasticity.after"] = ([0] if False in pl.enabled else []) + pl.after.values()  # 0: no shrink
            out["plasticity.rule"] = list(pl.rules)
        return out

    def _define_flat(self, trial: Any) -> None:
        for name, choices in self._flat_choices().items():
            ints = all(isinstance(c, int) and not isinstance(c, bool) for c in choices)
            step = (choices[1] - choices[0] if len(choices) > 1 else 1) if ints else 0
            if step > 0 and choices == list(range(choices[0], choices[-1] + 1, step)):  # evenly spaced integers
                trial.suggest_int(name, choices[0], choices[-1], step=step)
            else:
                trial.suggest_categorical(name, choices)
            if name.endswith(f".{_OPTIMIZER_STATE_PARAM}") and self.lr is not None:
                trial.suggest_float(name.rsplit(".", 1)[0] + ".lr", self.lr.low, self.lr.high, log=self.lr.log)
        if self.events.max > 0 and self.plasticity is not None and self.plasticity.lr is not None and "plasticity.after" in trial.params:
            pl = self.plasticity.lr
            trial.suggest_float("plasticity.lr", pl.low, pl.high, log=pl.log)

    def grid(self, *, sampler: str = "grid") -> dict[str, list[Any]]:
        """The flat space as Optuna's ``GridSampler`` takes it: parameter -> every choice.

        Raises:
            ConfigError: the space is not ``encoding: flat``, or has a continuous ``lr``
                range (``sampler`` names who asked, for the message).
        """
        if self.encoding != "flat":
            raise ConfigError(f"sampler {sampler}: the search space needs encoding: flat (a conditional space has no fixed grid)")
        if self.lr is not None or (self.plasticity is not None and self.plasticity.lr is not None):
            raise ConfigError(f"sampler {sampler}: the search space has a continuous lr range; drop lr (and plasticity.lr) to grid it")
        return self._flat_choices()

    def to_conditional(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The conditional parameters a trial's parameters stand for (flat ones translated,
        unused flat events dropped; conditional ones returned as they are)."""
        if self.encoding != "flat" or "plasticity" in params or any(k.endswith(".neurons") for k in params):
            return dict(params)
        get = _Getter(params)
        pts = self.growth_points
        n = int(get("n_events"))
        out: dict[str, Any] = {"n_events": n}
        for i in range(n):
            point = str(get(f"ev{i}.point"))
            if point not in self.points:
                raise ScheduleError(f"parameter ev{i}.point: {point!r} is not a point of this space; valid: {', '.join(sorted(self.points))}")
            amounts = self.points[point].neurons.values()
            size = int(get(f"ev{i}.size"))
            if not 0 <= size < len(amounts):
                raise ScheduleError(f"parameter ev{i}.size: {size} is not an amount index of {point} (0..{len(amounts) - 1})")
            form = str(get(f"ev{i}.form"))
            out[f"ev{i}.point"] = point
            out[f"ev{i}.{point}.neurons"] = amounts[size]
            out[f"ev{i}.epoch"] = get(f"ev{i}.epoch")
            out[f"ev{i}.{point}.form"] = form
            out[self._init_key(i, point, pts[point])(form)] = get(f"ev{i}.init")
            out[f"ev{i}.freeze"] = get(f"ev{i}.freeze")
            out[f"ev{i}.{_OPTIMIZER_STATE_PARAM}"] = get(f"ev{i}.{_OPTIMIZER_STATE_PARAM}")
            if self.lr is not None:
                out[f"ev{i}.lr"] = get(f"ev{i}.lr")
        pl = self.plasticity
        if n > 0 and pl is not None:
            after = int(params["plasticity.after"]) if "plasticity.after" in params else 0
            out["plasticity"] = after > 0
            if after > 0:
                out["plasticity.after"] = after
                out["plasticity.rule"] = get("plasticity.rule")
                if pl.lr is not None:
                    out["plasticity.lr"] = get("plasticity.lr")
        return out

    # ---- the worker side: params -> schedule ----------------------------------------------
    def decode(self, params: Mapping[str, Any], *, label: str | None = None) -> GrowthSchedule:
        """Rebuild the schedule a trial's parameters describe (see module docstring for repairs).

        Raises:
            ScheduleError: a parameter this space needs is missing or names an unknown point.
        """
        params = self.to_conditional(params)
        pts = self.growth_points
        epochs = self.epochs
        get = _Getter(params)
        n = int(get("n_events"))
        raw: list[dict[str, Any]] = []
        for i in range(n):
            point = str(get(f"ev{i}.point"))
            if point not in self.points:
                raise ScheduleError(f"parameter ev{i}.point: {point!r} is not a point of this space; valid: {', '.join(sorted(self.points))}")
            step = max(1, int(getattr(pts[point], "step", 1) or 1))
            neurons = int(get(f"ev{i}.{point}.neurons"))
            neurons = max(step, -(-neurons // step) * step)
            epoch = min(max(int(get(f"ev{i}.epoch")), 0), epochs - 1)
            raw.append(
                {
                    "point": point,
                    "epoch": epoch,
                    "neurons": neurons,
                    "form": (form := str(get(f"ev{i}.{point}.form"))),
                    "init": str(get(self._init_key(i, point, pts[point])(form))),
                    "freeze": str(get(f"ev{i}.freeze")),
                    "optimizer_state": str(get(f"ev{i}.{_OPTIMIZER_STATE_PARAM}")),
                    "lr": float(get(f"ev{i}.lr")) if self.lr is not None else None,
                }
            )
        # merge same point + epoch (first one's settings kept, neurons summed)
        merged: list[dict[str, Any]] = []
        for ev in raw:
            twin = next((m for m in merged if m["point"] == ev["point"] and m["epoch"] == ev["epoch"]), None)
            if twin is not None:
                twin["neurons"] += ev["neurons"]
            else:
                merged.append(dict(ev))
        # one phase per epoch: the first event of the epoch decides
        phase: dict[int, dict[str, Any]] = {}
        for ev in merged:
            ph = phase.setdefault(ev["epoch"], {k: ev[k] for k in ("freeze", "optimizer_state", "lr")})
            ev.update(ph)
        events = [GrowthEvent(**{k: v for k, v in ev.items() if v is not None}) for ev in merged]
        # plasticity: shrink everything grown, some epochs after the last growth
        if events and self.plasticity is not None and bool(params.get("plasticity", False)):
            last = max(e.epoch for e in events)
            at = min(last + int(get("plasticity.after")), epochs - 1)
            if at > last:
                rule = str(get("plasticity.rule"))
                lr = float(get("plasticity.lr")) if self.plasticity.lr is not None else None
                for point in sorted({e.point for e in events}):
                    rules = tuple(pts[point].shrink_rules)
                    r = rule if rule in rules else next((x for x in self.plasticity.rules if x in rules), None)
                    if r is None:
                        continue
                    events.append(GrowthEvent(point=point, epoch=at, action="shrink", neurons=None, rule=cast(ShrinkRule, r), freeze="all",
                                              optimizer_state="fresh", lr=lr))
        sched = GrowthSchedule.of(events, label=label)
        return sched.validate_for(pts, epochs, source="decoded schedule")

    # ---- helpers ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (for study user attrs and ``--help``)."""
        return self.model_dump(mode="json")


class _Getter:
    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def __call__(self, key: str) -> Any:
        if key not in self.params:
            raise ScheduleError(f"parameter {key!r} is missing from the trial's parameters; got {sorted(self.params)}")
        return self.params[key]


def _refuse(source: str, key: str, check: Callable[[str], None], choices: tuple[str, ...], hint: str = "") -> None:
    """Raise, as a ConfigError naming ``key``, the event check's error for the first of a key's
    ``choices`` (none of which the backbone supports): the text a schedule gets for that choice."""
    for choice in choices:
        try:
            check(choice)
        except EventError as exc:
            raise ConfigError(f"{source}: {key}: {exc}{hint}") from None
    raise AssertionError(f"{key}: no choice was refused")  # pragma: no cover - callers know one is


def _suggest_int(trial: Any, name: str, r: IntRange) -> int:
    if r.log:
        return int(trial.suggest_int(name, r.low, r.high, log=True))
    high = r.low + ((r.high - r.low) // r.step) * r.step
    return int(trial.suggest_int(name, r.low, high, step=r.step))


def backbone_points(backbone: str, preset: str | None = None) -> dict[str, PointLike]:
    """The growth points of a registered backbone (built once at its preset, ``tiny`` by default).

    Raises:
        ConfigError: unknown backbone or preset (listing the valid ones).
    """
    return _points_cached(backbone, preset or "tiny")


_POINTS_CACHE: dict[tuple[str, str], dict[str, PointLike]] = {}


def _points_cached(backbone: str, preset: str) -> dict[str, PointLike]:
    key = (backbone, preset)
    if key not in _POINTS_CACHE:
        from growsearch.backbones import create_backbone

        _POINTS_CACHE[key] = dict(create_backbone(backbone, preset).growth_points())
    return _POINTS_CACHE[key]


def parse_space(data: Any, source: str, *, epochs: int | None = None, preset: str | None = None, backbone: str | None = None) -> SearchSpace:
    """Validate a space mapping; with ``epochs`` also bind it to its backbone and run.

    Raises:
        ConfigError: an unknown key, empty range, min > max, unknown growth point (listing the
            valid ones), an epoch range beyond the run, or a backbone other than ``backbone``.
    """
    space = parse_model(SearchSpace, data, source)
    if backbone is not None and space.backbone != backbone:
        raise ConfigError(f"{source}: backbone: the space is for {space.backbone!r} but the study trains {backbone!r}")
    try:
        points = backbone_points(space.backbone, preset or space.preset)
    except ConfigError as exc:
        raise ConfigError(f"{source}: backbone: {exc}") from None
    return space.bind(points, epochs if epochs is not None else space.epoch.high + 1, source=source)


def load_space(path: str | Path, *, epochs: int | None = None, preset: str | None = None, backbone: str | None = None) -> SearchSpace:
    """Read ``search_spaces/<name>.yaml`` and bind it to its backbone (and run of ``epochs``).

    Raises:
        ConfigError: see :func:`parse_space`; messages start with the file name.
    """
    return parse_space(load_yaml(path, what="search space"), str(path), epochs=epochs, preset=preset, backbone=backbone)
