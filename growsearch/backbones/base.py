"""The contract every growable backbone fulfils.

A backbone is an ``nn.Module`` that maps a batch of 16 kHz waveforms ``(batch, samples)``
to logits ``(batch, 2)`` (index 1 = bona fide). It owns its front-end (``self.frontend``:
waveform -> features, no parameters) and its body (:meth:`Backbone.body`: features ->
logits), and names its *growth points*. Growth is surgery on the live module:
:meth:`Backbone.grow` / :meth:`Backbone.shrink` replace the affected parameters in place
and return a :class:`~growsearch.growth.surgery.SurgeryResult` that says which tensors
changed and how.

Life cycle::

    model = create_backbone("resnet18", preset="small")
    model.growth_points()            # {"stage2": GrowthPoint(...), ...}
    res = model.apply_event(event, generator=g)   # records the event in model.history
    model.history                    # events applied so far, replayed by checkpoints
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from growsearch.errors import ScheduleError
from growsearch.growth.check import check_grow, check_shrink, growth_point
from growsearch.growth.surgery import SurgeryResult
from growsearch.schedule import GrowthEvent, GrowthSchedule
from growsearch.vocabulary import INITS, SHRINK_RULES


@dataclass(frozen=True)
class GrowthPoint:
    """A place where a backbone can grow.

    Attributes:
        name: unique within the backbone, e.g. ``stage2``, ``gru2``, ``layer3.ffn``.
        base_width: the width the backbone was built with (channels, hidden units, ...).
        forms: supported growth forms (``inplace``, ``parallel``).
        inits: supported initialisers.
        shrink_rules: supported plasticity shrink rules.
        unit: what one "neuron" is here (``channel``, ``hidden unit``, ``head``...).
        step: widths grow in multiples of this (e.g. one attention head = head_dim units).
        description: one line for ``--help`` and reports.
        excluded: ``(form, init)`` pairs of ``forms`` x ``inits`` that do not go together
            here (e.g. ``("parallel", "net2net")``); see :meth:`inits_for`.
    """

    name: str
    base_width: int
    forms: tuple[str, ...] = ("inplace",)
    inits: tuple[str, ...] = INITS
    shrink_rules: tuple[str, ...] = SHRINK_RULES
    unit: str = "neuron"
    step: int = 1
    description: str = ""
    excluded: tuple[tuple[str, str], ...] = ()

    def inits_for(self, form: str) -> tuple[str, ...]:
        """The initialisers supported with ``form`` (``inits`` minus the excluded pairs)."""
        return tuple(i for i in self.inits if (form, i) not in self.excluded)


@dataclass
class BackboneSpec:
    """How to rebuild a backbone from scratch: registry name, preset and overrides."""

    name: str
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset, "overrides": dict(self.overrides)}


class Backbone(nn.Module, ABC):
    """Base class of growable backbones (see module docstring for the contract)."""

    #: "logmel", "lfcc" or "raw": the front-end this backbone expects.
    input_kind: ClassVar[str] = "raw"
    #: True when the factory takes ``pretrained=PATH`` and reads the weights file itself (its
    #: own formats, e.g. wav2vec2's); ``model.pretrained`` is then passed to it that way.
    #: False: ``model.pretrained`` must hold this backbone's state dict, loaded strictly.
    pretrained_option: ClassVar[bool] = False
    #: the front-end module (set by each subclass's ``__init__``).
    frontend: nn.Module
    #: ``model.max_params`` of the config that built it (``None``: the default limit); the size
    #: check of :meth:`check_schedule` counts against it.
    max_params: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.spec: BackboneSpec | None = None
        self.history: list[dict[str, Any]] = []

    # ---- forward ---------------------------------------------------------------------
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: ``(batch, samples)`` at 16 kHz, or the front-end's output computed by the
        feature cache (a :class:`~growsearch.data.feature_cache.Features`). Returns: logits ``(batch, 2)``."""
        if getattr(wave, "gs_features", False):
            return self.body(wave.as_subclass(torch.Tensor))
        return self.body(self.frontend(wave))

    @abstractmethod
    def body(self, features: torch.Tensor) -> torch.Tensor:
        """Features as the front-end produces them -> logits ``(batch, 2)``."""

    # ---- growth ----------------------------------------------------------------------
    @abstractmethod
    def growth_points(self) -> dict[str, GrowthPoint]:
        """The growth points, by name (the same set whatever has been grown)."""

    @abstractmethod
    def width(self, point: str) -> int:
        """The current width at ``point`` (in-place width plus parallel branches)."""

    def grow(
        self,
        point: str,
        neurons: int,
        *,
        form: str = "inplace",
        init: str = "random",
        generator: torch.Generator | None = None,
    ) -> SurgeryResult:
        """Add ``neurons`` units at ``point``; every consumer of the point is widened too.

        The event is checked once (:mod:`growsearch.growth.check`) before any surgery.

        Raises:
            ScheduleError: unknown point, form or init, or ``neurons`` not a positive multiple
                of the point's step.
        """
        check_grow(growth_point(self.growth_points(), point), neurons, form, init)
        return self._grow(point, neurons, form=form, init=init, generator=generator)

    def shrink(self, point: str, neurons: int | None = None, *, rule: str = "appended") -> SurgeryResult:
        """Remove ``neurons`` units at ``point`` (``None``: all grown so far).

        The event is checked once (:mod:`growsearch.growth.check`) before any surgery.

        Raises:
            ScheduleError: unknown point or rule, nothing or fewer units grown, or ``neurons``
                not a multiple of the point's step.
        """
        p = growth_point(self.growth_points(), point)
        n = check_shrink(p, neurons, rule, self.grown(point))
        return self._shrink(point, n, rule=rule)

    @abstractmethod
    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        """The surgery of :meth:`grow`, on an event already checked."""

    @abstractmethod
    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """The surgery of :meth:`shrink`: remove ``neurons`` (> 0, checked) units at ``point``."""

    def grown(self, point: str) -> int:
        """Units currently grown at ``point`` beyond the base width."""
        return self.width(point) - self.growth_points()[point].base_width

    def apply_event(self, event: GrowthEvent, *, generator: torch.Generator | None = None) -> SurgeryResult:
        """Apply one schedule event and record it in :attr:`history`.

        Raises:
            ScheduleError: the point, form, init or rule is not supported here, or a shrink
                removes more than was grown (see :meth:`grow`, :meth:`shrink`).
        """
        if event.action == "grow":
            res = self.grow(event.point, int(event.neurons or 0), form=event.form, init=event.init, generator=generator)
        else:
            res = self.shrink(event.point, event.neurons, rule=event.rule)
        self.history.append(event.model_dump())
        return res

    def check_schedule(self, schedule: GrowthSchedule, *, source: str = "schedule") -> None:
        """Apply ``schedule`` to a throw-away copy of this backbone, without training.

        ``GrowthSchedule.validate_for`` checks what every backbone shares (points, forms,
        inits, epochs, shrink amounts); some backbones refuse more (``wav2vec2_widen`` only
        undoes whole widenings, last first). This dry run makes every such refusal surface
        before any training, naming the event.

        Before the dry run, the size the schedule grows the model to is estimated on the meta
        device (:mod:`growsearch.backbones.size`), so a width too large to allocate is refused
        with its estimate instead of failing the allocation.

        Raises:
            ScheduleError: an event cannot be applied, or the grown model exceeds the size limit;
                the message names ``source`` and the event.
        """
        self._check_schedule_size(schedule, source)
        probe = copy.deepcopy(self)
        g = torch.Generator().manual_seed(0)
        for i, event in enumerate(schedule.events):
            try:
                probe.apply_event(event, generator=g)
            except ScheduleError as exc:
                raise ScheduleError(f"{source}: events[{i}] ({event.describe()}): {exc}") from None
        del probe

    def _check_schedule_size(self, schedule: GrowthSchedule, source: str) -> None:
        if self.spec is None or not schedule.events:
            return
        from growsearch.backbones.size import max_params_limit, meta_copy, peak_params, size_message

        msg = size_message(peak_params(meta_copy(self), [schedule]), max_params_limit(self.max_params), source)
        if msg:
            raise ScheduleError(msg)

    def replay(self, events: list[dict[str, Any]]) -> None:
        """Re-apply recorded events (shapes only matter: a state dict is loaded after)."""
        g = torch.Generator().manual_seed(0)
        for ev in events:
            self.apply_event(GrowthEvent.model_validate(ev), generator=g)
