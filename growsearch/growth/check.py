"""The one check of a growth event against a backbone's growth point.

``Backbone.grow``/``Backbone.shrink`` (before any surgery), ``GrowthSchedule.validate_for``
(a whole schedule against a run) and ``SearchSpace.bind`` (a space's choices against a
backbone) all ask these functions, so one failure has one text wherever it is found. The
callers only add where it was found (``s.yaml: events[2].init: ...``).

Every failure is an :class:`EventError`: a :class:`~growsearch.errors.ScheduleError` that
also names the event field at fault (``point``, ``form``, ``init``, ``rule``, ``neurons``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from growsearch.errors import ScheduleError

__all__ = ["EventError", "PointLike", "check_grow", "check_shrink", "growth_point", "inits_for"]


class PointLike(Protocol):
    """What the check needs of a growth point (see ``growsearch.backbones.base.GrowthPoint``)."""

    @property
    def name(self) -> str: ...
    @property
    def forms(self) -> tuple[str, ...]: ...
    @property
    def inits(self) -> tuple[str, ...]: ...
    @property
    def shrink_rules(self) -> tuple[str, ...]: ...
    @property
    def step(self) -> int: ...
    @property
    def unit(self) -> str: ...

    def inits_for(self, form: str) -> tuple[str, ...]: ...


P = TypeVar("P", bound=PointLike)


class EventError(ScheduleError):
    """A growth event that this backbone cannot apply; ``field`` is the event key at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def inits_for(p: PointLike, form: str) -> tuple[str, ...]:
    """The inits ``p`` supports with ``form``."""
    return tuple(p.inits_for(form))


def growth_point(points: Mapping[str, P], name: str) -> P:
    """The growth point called ``name``.

    Raises:
        EventError: no such point (the message lists the valid ones).
    """
    if name not in points:
        valid = ", ".join(sorted(points)) or "(none)"
        raise EventError("point", f"unknown growth point {name!r}; valid points: {valid}")
    return points[name]


def check_form(p: PointLike, form: str) -> None:
    """Raises: EventError: ``p`` cannot grow ``form`` (unknown names included)."""
    if form not in p.forms:
        raise EventError("form", f"point {p.name!r} cannot grow {form!r}; it supports {', '.join(p.forms)}")


def check_init(p: PointLike, form: str, init: str) -> None:
    """Raises: EventError: ``p`` does not support ``init`` with ``form`` (unknown names included)."""
    allowed = inits_for(p, form)
    if init not in allowed:
        with_form = f" with form {form!r}" if allowed != tuple(p.inits) else ""
        raise EventError("init", f"point {p.name!r} does not support init {init!r}{with_form}; it supports {', '.join(allowed) or '(none)'}")


def check_rule(p: PointLike, rule: str) -> None:
    """Raises: EventError: ``p`` does not support the shrink ``rule`` (unknown names included)."""
    if rule not in p.shrink_rules:
        supported = ", ".join(p.shrink_rules) or "(no shrinking)"
        raise EventError("rule", f"point {p.name!r} does not support shrink rule {rule!r}; it supports {supported}")


def check_amount(p: PointLike, neurons: object) -> None:
    """Raises: EventError: ``neurons`` is not a positive integer multiple of ``p.step``."""
    step = max(1, int(p.step or 1))
    if not isinstance(neurons, int) or isinstance(neurons, bool) or neurons <= 0 or neurons % step:
        what = "a positive integer" if step == 1 else f"a positive multiple of {step} ({p.unit})"
        raise EventError("neurons", f"point {p.name!r}: neurons must be {what}, got {neurons!r}")


def check_grow(p: PointLike, neurons: object, form: str, init: str) -> None:
    """Check a grow of ``neurons`` units at ``p`` with ``form`` and ``init``.

    Raises:
        EventError: unsupported form or init, or ``neurons`` not a positive multiple of the step.
    """
    check_form(p, form)
    check_init(p, form, init)
    check_amount(p, neurons)


def check_shrink(p: PointLike, neurons: int | None, rule: str, have: int) -> int:
    """Check a shrink at ``p`` by ``neurons`` (``None``: everything grown) with ``rule``,
    when ``have`` units are grown there; returns the number of units removed.

    Raises:
        EventError: unsupported rule, nothing grown, more than was grown, or not a multiple of the step.
    """
    check_rule(p, rule)
    if have <= 0:
        raise EventError("neurons", f"cannot shrink {p.name!r}: nothing was grown there before")
    n = have if neurons is None else neurons
    if isinstance(n, int) and n > have:
        raise EventError("neurons", f"cannot shrink {p.name!r} by {n}: only {have} units were grown there before")
    check_amount(p, n)
    return n
