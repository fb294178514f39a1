"""How big a model gets, known before anything is allocated.

A backbone is built on the ``meta`` device (shapes, no memory) and its parameters counted,
then each growth event of a schedule is applied to that meta copy; the peak over the schedule
is the model's size. One estimate for every backbone, no per-backbone formula.

The limit is ``model.max_params`` in the training config, else ``$GROWSEARCH_MAX_PARAMS``,
else :data:`DEFAULT_MAX_PARAMS`; the message also gives the memory that training would take
(fp32 weights, gradients and two Adam moments: :data:`TRAIN_BYTES_PER_PARAM` bytes a parameter).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from typing import Any, cast

import torch

from growsearch.bounds import NEURONS_MAX
from growsearch.errors import ConfigError, GrowsearchError, ScheduleError
from growsearch.schedule import GrowthEvent, GrowthSchedule
from growsearch.vocabulary import Init

MAX_PARAMS_ENV = "GROWSEARCH_MAX_PARAMS"
#: Parameters a model may reach by default (about 16 GB to train with Adam in fp32).
DEFAULT_MAX_PARAMS = 1_000_000_000
TRAIN_BYTES_PER_PARAM = 16


def max_params_limit(configured: int | None = None) -> int:
    """The limit: ``configured`` (``model.max_params``), else the environment, else the default.

    Raises:
        ConfigError: ``$GROWSEARCH_MAX_PARAMS`` is not a positive integer.
    """
    if configured is not None:
        return int(configured)
    env = os.environ.get(MAX_PARAMS_ENV, "").strip()
    if not env:
        return DEFAULT_MAX_PARAMS
    try:
        value = int(float(env))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"${MAX_PARAMS_ENV}={env!r}: expected a positive number of parameters")
    return value


#: Meta backbones already built, by (name, preset, options): configs are validated often.
_BUILT: dict[str, Any] = {}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_backbone(name: str, preset: str | None, options: dict[str, Any]) -> Any:
    """The backbone built on the meta device.

    Raises:
        ConfigError: the options cannot build it (wrong type, impossible size), in one line.
    """
    from growsearch.backbones import create_backbone

    shapes = {k: v for k, v in options.items() if k != "pretrained"}  # weights do not change sizes
    for key, value in _numbers(shapes):
        if abs(value) > NEURONS_MAX:
            raise ConfigError(f"options.{key}: {value:g} is beyond any buildable size (at most {NEURONS_MAX:,})")
    try:
        cache_key = json.dumps([name, preset, shapes], sort_keys=True, default=repr)
    except (TypeError, ValueError):
        cache_key = None
    if cache_key is not None and cache_key in _BUILT:
        return copy.deepcopy(_BUILT[cache_key])
    try:
        with torch.device("meta"):
            model = create_backbone(name, preset, **shapes)
    except GrowsearchError as exc:
        raise ConfigError(_first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a bad option value: ValueError, TypeError, RuntimeError (overflow) ...
        raise ConfigError(f"cannot build backbone {name!r} (preset {preset}) with options {options}: {_first_line(exc)}") from None
    if cache_key is not None:
        if len(_BUILT) >= 16:
            _BUILT.clear()
        _BUILT[cache_key] = model
        return copy.deepcopy(model)
    return model


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _numbers(value: Any, key: str = "") -> list[tuple[str, float]]:
    """Every number inside an options mapping, with its dotted key."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [(key, float(value))]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _numbers(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list | tuple):
        return [x for i, v in enumerate(value) for x in _numbers(v, f"{key}[{i}]")]
    return []


def meta_copy(backbone: Any) -> Any:
    """A meta-device twin of a live backbone: rebuilt from its spec, its growth history replayed."""
    model = meta_backbone(backbone.spec.name, backbone.spec.preset, dict(backbone.spec.overrides))
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        for ev in backbone.history:
            model.apply_event(_shape_event(GrowthEvent.model_validate(ev)), generator=g)
    return model


def _shape_event(event: GrowthEvent) -> GrowthEvent:
    """The same event with an initialiser that works on the meta device (sizes do not depend on it)."""
    return event.model_copy(update={"init": "zero_fanout"}) if event.action == "grow" and event.init == "net2net" else event


def peak_params(model: Any, schedules: Iterable[GrowthSchedule]) -> int:
    """Largest parameter count of ``model`` (a meta backbone) over each schedule's events.

    Events a backbone refuses are skipped here: the schedule checks report them.
    """
    base = _count(model)
    peak = base
    g = torch.Generator().manual_seed(0)
    for schedule in schedules:
        probe = copy.deepcopy(model)
        for event in schedule.events:
            try:
                with torch.device("meta"):
                    probe.apply_event(_shape_event(event), generator=g)
            except (ScheduleError, ValueError, NotImplementedError):
                continue
            peak = max(peak, _count(probe))
    return peak


def size_message(params: int, limit: int, what: str) -> str | None:
    """``None`` when ``params <= limit``, else the one-line refusal with the estimate."""
    if params <= limit:
        return None
    gb = params * TRAIN_BYTES_PER_PARAM / 1e9
    return (f"{what + ': ' if what else ''}the model would have {params:,} parameters (about {gb:,.1f} GB to train with Adam in fp32), "
            f"over the limit of {limit:,}; use smaller widths, or raise model.max_params (or ${MAX_PARAMS_ENV})")


def check_model(name: str, preset: str | None, options: dict[str, Any], limit: int | None, *,
                schedules: Iterable[GrowthSchedule] = (), space: Any = None, what: str = "model") -> int:
    """Build on meta, count, refuse above the limit; returns the peak parameter count.

    Args:
        schedules: schedules whose growth counts (peak over their events).
        space: a search space whose largest proposal counts (see :func:`worst_case_schedules`).

    Raises:
        ConfigError: bad options, or the model (grown by ``schedules``/``space``) exceeds the limit.
    """
    model = meta_backbone(name, preset, options)
    schedules = list(schedules)
    if space is not None:
        schedules += worst_case_schedules(model, space)
    peak = peak_params(model, schedules)
    msg = size_message(peak, max_params_limit(limit), what)
    if msg:
        raise ConfigError(msg)
    return peak


def worst_case_schedules(model: Any, space: Any) -> list[GrowthSchedule]:
    """Schedules at least as large as any the search space can propose: every allowed point
    grown by ``events.max * neurons.high`` (each event grows one point by at most ``high``),
    once with each point's first form and once with its last."""
    return [_all_points_grown(model, space, pick) for pick in (0, -1)]


def _all_points_grown(model: Any, space: Any, pick: int) -> GrowthSchedule:
    points = model.growth_points()
    events = []
    for name, ps in space.points.items():
        gp = points.get(name)
        if gp is None:
            continue
        forms = [f for f in (ps.forms or space.forms or gp.forms) if f in gp.forms] or list(gp.forms)
        form = forms[pick]
        inits = gp.inits_for(form)
        # one of the point's inits (GrowthEvent validates it)
        init = cast(Init, "zero_fanout" if "zero_fanout" in inits else (inits[0] if inits else "random"))
        n = max(1, space.events.max) * ps.neurons.high
        events.append(GrowthEvent(point=name, epoch=0, action="grow", neurons=-(-n // gp.step) * gp.step, form=form, init=init))
    return GrowthSchedule(events=tuple(events)) if events else GrowthSchedule.empty()
