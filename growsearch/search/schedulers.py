"""The study YAML's ``scheduler`` key: which trial scheduler stops trials early, and its settings.

One settings model per name of :data:`growsearch.vocabulary.SCHEDULERS`, told apart by
``name``::

    scheduler: none                                   # the default: every trial trains to its last epoch
    scheduler: {name: moasha, rungs: [2, 4]}          # rungs in epochs trained
    scheduler: {name: moasha, grace: 1, reduction_factor: 3, min_epochs_after_growth: 1}
    scheduler: {name: pbg, population: 8, interval: 2}   # population-based growth
    scheduler: {name: pbg, population: 8, boundaries: [1, 3], quantile: 0.25}

A rung ``r`` is a number of epochs trained (the decision is taken after epoch ``r - 1``, the
0-based epoch, has been evaluated); every rung must come before the study's last epoch.
With ``grace`` instead of ``rungs``, the rungs are ``grace * reduction_factor**k`` below
``epochs`` (default: ``grace: 1``). The decision rule is in :mod:`growsearch.search.moasha`.
PBG's boundaries are epochs trained too: ``boundaries`` or every ``interval`` epochs before
``epochs`` (default ``interval: 1``); its rules are in :mod:`growsearch.search.pbg`. Its
population must fit the study's trial budget (checked with the study).

The scheduler is not part of the study's identity (its ``config_hash``): COMPLETE trials are
trained to their last epoch either way, so a study may be continued with or without one.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from growsearch.bounds import EPOCHS_MAX
from growsearch.errors import ConfigError
from growsearch.vocabulary import NO_SCHEDULER, SCHEDULERS
from growsearch.yamlio import did_you_mean, key_line, parse_model

__all__ = ["MoashaConfig", "NoScheduler", "PbgConfig", "SchedulerConfig", "parse_scheduler"]


def _epochs_trained(v: tuple[int, ...] | None, what: str) -> tuple[int, ...] | None:
    """A scheduler's list of epochs trained (rungs, boundaries): at least one, strictly increasing."""
    if v is not None and not v:
        raise ValueError(f"give at least one {what} (epochs trained)")
    if v is not None and any(b <= a for a, b in zip(v, v[1:], strict=False)):
        raise ValueError(f"expected strictly increasing epochs trained, got {list(v)}")
    return v


class NoScheduler(BaseModel):
    """``scheduler: none``: no early stopping (every trial trains to its last epoch)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Literal["none"] = "none"


class MoashaConfig(BaseModel):
    """``scheduler: {name: moasha, ...}``: growth-aware multi-objective asynchronous successive halving.

    Attributes:
        rungs: the rungs, in epochs trained, strictly increasing (``None``: from ``grace``).
        grace: the first rung when ``rungs`` is not given (then ``grace * reduction_factor**k``).
        reduction_factor: a trial goes on past a rung only if it ranks in the best
            ``1 / reduction_factor`` of the schedules judged there with it.
        min_epochs_after_growth: a trial whose last growth event happened fewer epochs than
            this before a rung (or whose events are not all applied yet) is judged only
            against trials with the same applied events (see :mod:`growsearch.search.moasha`).
        promote: after each rung decision, a trial stopped at that rung that the evidence now
            keeps (more trials reached the rung, worse ones) is promoted: a new trial with its
            schedule resumes its checkpoint (``promoted_from``). Off by default (ASHA's stopping
            variant: a stop is final).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: Literal["moasha"] = "moasha"
    rungs: tuple[Annotated[int, Field(ge=1, le=EPOCHS_MAX)], ...] | None = None
    grace: int | None = Field(default=None, ge=1, le=EPOCHS_MAX)
    reduction_factor: float = Field(default=3.0, gt=1.0, le=100.0)
    min_epochs_after_growth: int = Field(default=1, ge=0, le=EPOCHS_MAX)
    promote: bool = False

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return _epochs_trained(v, "rung")

    @model_validator(mode="after")
    def _one_way(self) -> MoashaConfig:
        if self.rungs is not None and self.grace is not None:
            raise ValueError("give rungs or grace, not both")
        return self

    def resolved_rungs(self, epochs: int) -> tuple[int, ...]:
        """The rungs of a study of ``epochs`` epochs (those of ``grace`` stop below ``epochs``)."""
        if self.rungs is not None:
            return self.rungs
        out: list[int] = []
        k = 0
        while True:
            r = int(math.floor((self.grace or 1) * self.reduction_factor**k + 1e-9))
            if r >= epochs:
                break
            if not out or r > out[-1]:
                out.append(r)
            k += 1
        return tuple(out)


class PbgConfig(BaseModel):
    """``scheduler: {name: pbg, ...}``: population-based growth (:mod:`growsearch.search.pbg`).

    Attributes:
        population: members drawn by the study's sampler; after them the study trains only
            children (each replaces a member it stopped), so it stays this size.
        boundaries: the epochs trained at which members are judged, strictly increasing
            (``None``: every ``interval`` epochs).
        interval: epochs between boundaries when ``boundaries`` is not given.
        quantile: the share of the models at a boundary that is replaced (the worst) and
            copied (the best).
        min_epochs_after_growth: a model grown fewer epochs than this before a boundary is
            not judged there (neither replaced nor copied).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: Literal["pbg"] = "pbg"
    population: int = Field(default=8, ge=2, le=10_000)
    boundaries: tuple[Annotated[int, Field(ge=1, le=EPOCHS_MAX)], ...] | None = None
    interval: int | None = Field(default=None, ge=1, le=EPOCHS_MAX)
    quantile: float = Field(default=0.5, gt=0.0, le=0.5)
    min_epochs_after_growth: int = Field(default=1, ge=0, le=EPOCHS_MAX)

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return _epochs_trained(v, "boundary")

    @model_validator(mode="after")
    def _one_way(self) -> PbgConfig:
        if self.boundaries is not None and self.interval is not None:
            raise ValueError("give boundaries or interval, not both")
        return self

    def resolved_boundaries(self, epochs: int) -> tuple[int, ...]:
        """The boundaries of a study of ``epochs`` epochs (those of ``interval`` stop below ``epochs``)."""
        if self.boundaries is not None:
            return self.boundaries
        step = self.interval or 1
        return tuple(range(step, epochs, step))


#: A study's scheduler settings, told apart by ``name``.
SchedulerConfig = NoScheduler | MoashaConfig | PbgConfig

_MODELS: dict[str, type[BaseModel]] = {"none": NoScheduler, "moasha": MoashaConfig, "pbg": PbgConfig}
assert set(_MODELS) == set(SCHEDULERS), "every scheduler name has its settings model"


def parse_scheduler(value: Any, source: str, *, epochs: int, lines: Any = None) -> SchedulerConfig:
    """The ``scheduler`` key of a study (``None``, a name, or a mapping with ``name``).

    Args:
        value: the key's value as read.
        source: the study file (errors start with it).
        epochs: the study's epochs (every rung must come before its end).
        lines: the whole study as read by :func:`growsearch.yamlio.load_yaml` (line numbers).

    Raises:
        ConfigError: an unknown name or setting, a bad value, or a rung at or beyond the
            study's epochs: one line naming the key.
    """
    def where(*loc: Any) -> str:
        line = key_line(lines, ("scheduler", *loc)) if lines is not None else None
        return f"{source}:{line}" if line else source

    if value is None:
        return NoScheduler()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where()}: scheduler: expected a name ({', '.join(SCHEDULERS)}) or a mapping with name, "
                          f"got {type(value).__name__}")
    name = value.get("name", NO_SCHEDULER)
    if name not in _MODELS:
        hint = did_you_mean(str(name), SCHEDULERS)
        raise ConfigError(f"{where('name')}: scheduler.name: unknown scheduler {name!r}{hint}; "
                          f"valid schedulers: {', '.join(SCHEDULERS)}")
    model = _MODELS[name]
    wrapper = pydantic.create_model("Study", __config__=ConfigDict(extra="forbid"), scheduler=(model, ...))
    parsed = parse_model(wrapper, {"scheduler": dict(value)}, source, lines=lines if lines is not None else {"scheduler": value})
    cfg: SchedulerConfig = parsed.scheduler  # type: ignore[attr-defined]
    if isinstance(cfg, MoashaConfig):
        rungs = cfg.resolved_rungs(epochs)
        late = [r for r in rungs if r >= epochs]
        if late:
            key = "rungs" if cfg.rungs is not None else "grace"
            raise ConfigError(f"{where(key)}: scheduler.{key}: rung {late[0]} is not before the study's end "
                              f"(epochs: {epochs}); a rung is a number of epochs trained, at most {epochs - 1}")
        if not rungs:
            raise ConfigError(f"{where('grace')}: scheduler.grace: no rung fits before the study's end (epochs: {epochs})")
    if isinstance(cfg, PbgConfig):
        bounds = cfg.resolved_boundaries(epochs)
        late = [b for b in bounds if b >= epochs]
        key = "boundaries" if cfg.boundaries is not None else "interval"
        if late:
            raise ConfigError(f"{where(key)}: scheduler.{key}: boundary {late[0]} is not before the study's end "
                              f"(epochs: {epochs}); a boundary is a number of epochs trained, at most {epochs - 1}")
        if not bounds:
            raise ConfigError(f"{where(key)}: scheduler.{key}: no boundary fits before the study's end (epochs: {epochs})")
    return cfg
