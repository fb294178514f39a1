"""The configuration of one training run: ``TrainConfig``.

A training config is YAML read by :func:`load_train_config` (via
:func:`growsearch.yamlio.load_model`, so every error names the file and the key)::

    seed: 42
    data: {...}                      # a growsearch.data.config.DataConfig
    model: {backbone: lcgrnn, preset: tiny, options: {}, pretrained: null}
    training: {epochs: 2, batch_size: 32, optimizer: adam, lr: 1.0e-3, loss: ce, ...}
    schedule: {events: [...]}        # optional inline GrowthSchedule

Loss functions (``training.loss``):

- ``ce``: cross-entropy on the two logits.
- ``hinge``: the multi-class (Weston-Watkins / ``torch.nn.MultiMarginLoss``) hinge on the
  two logits with margin 1, i.e. per sample ``max(0, 1 - (s_y - s_other)) / 2`` where
  ``s_y`` is the logit of the true class. The paper trains the LC-GRNN with a hinge loss;
  this is the form used here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from growsearch.bounds import BATCH_MAX, EPOCHS_MAX, WORKERS_MAX, Seed
from growsearch.data.config import DataConfig
from growsearch.schedule import GrowthSchedule
from growsearch.vocabulary import OptimizerName
from growsearch.yamlio import load_model

__all__ = ["ModelConfig", "TrainConfig", "TrainingConfig", "load_train_config"]


class ModelConfig(BaseModel):
    """Which backbone to build.

    Attributes:
        backbone: registry name (``growsearch backbones`` lists them).
        preset: preset of that backbone (``tiny``, ``small``...); ``None`` = its default.
        options: keyword overrides passed to the backbone factory.
        pretrained: path of a weights file loaded into the fresh backbone: for the wav2vec2
            family the same as ``options.pretrained`` (torchaudio / Hugging Face / fairseq
            files), else a state dict (``torch.save``) of this backbone, loaded strictly
            (see :mod:`growsearch.train.setup`).
        max_params: the largest model (parameters, after growth) this config may build
            (default ``$GROWSEARCH_MAX_PARAMS`` or 1e9); the model is built on the meta device
            at validation to check it, so bad options and impossible widths are refused before
            any allocation. Not part of the config's identity (hash).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str
    preset: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = None
    max_params: int | None = Field(default=None, gt=0, exclude=True)

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        from growsearch.backbones import list_backbones

        valid = list_backbones()
        if v not in valid:
            raise ValueError(f"unknown backbone {v!r}; valid backbones: {', '.join(valid)}")
        return v

    @model_validator(mode="after")
    def _known_preset(self) -> ModelConfig:
        from growsearch.backbones import backbone_presets

        presets = backbone_presets(self.backbone)
        if self.preset is not None and self.preset not in presets:
            raise ValueError(
                f"backbone {self.backbone!r} has no preset {self.preset!r}; valid presets: {', '.join(sorted(presets))}"
            )
        return self

    def check_size(self, *, schedules: Any = (), space: Any = None, what: str = "model") -> int:
        """Peak parameters of this model grown by ``schedules`` / the ``space``'s largest proposal.

        Raises:
            ConfigError: bad options, or over :attr:`max_params` (the message gives the estimate).
        """
        from growsearch.backbones.size import check_model

        return check_model(self.backbone, self.preset, dict(self.options), self.max_params, schedules=schedules,
                           space=space, what=what)

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        from growsearch.errors import ConfigError

        try:
            self.check_size(what="")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class TrainingConfig(BaseModel):
    """How to train.

    Attributes:
        epochs: number of epochs (growth events happen at epoch boundaries 0..epochs-1).
        batch_size: samples per batch.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9).
        lr: learning rate of the first phase (a growth event may set another).
        weight_decay: weight decay of the optimizer.
        loss: ``ce`` or ``hinge`` (see the module docstring).
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        scheduler: ``none`` or ``plateau`` (ReduceLROnPlateau on the dev EER, factor 0.5,
            patience 2, rebuilt with each phase).
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
        amp: mixed precision on CUDA: ``auto``/``true`` (bf16 where supported, else fp16 with a
            GradScaler) or ``false``. Ignored on the CPU.
        max_batches_per_epoch: stop each epoch after this many batches (smoke runs).
        max_eval_batches: evaluate dev/eval on at most this many batches (smoke runs).
        eval_every: evaluate the dev set every this many epochs (and always after the last).
        freeze_extra_trainable: parameter name prefixes (e.g. ``head``, ``fc1``) that train
            fully in a ``new_only``/``new_units`` phase besides the new units (the paper's frozen regime
            trains the new neurons plus projection and head); ignored by ``all``.
        best_checkpoint: which epochs may give the checkpoint that is evaluated and whose
            size is reported: ``last_phase`` (default) = epochs from the last growth or shrink
            event on, so a dropin run reports the grown model and a plasticity run the shrunk
            one (the paper's rule); ``any`` = every epoch (a schedule ending with a shrink still
            keeps its last phase), so a run may report a checkpoint from before its growth.

    ``training.num_workers`` is removed: it was validated but never read (DataLoader workers
    are ``data.num_workers``). A config that still sets it loads, with one warning per
    process; its value is left out of dumps and kept only for :meth:`TrainConfig.identity`,
    so hashes do not change.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    epochs: int = Field(gt=0, le=EPOCHS_MAX)
    batch_size: int = Field(default=32, gt=0, le=BATCH_MAX)
    optimizer: OptimizerName = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    loss: Literal["ce", "hinge"] = "ce"
    grad_clip: float | None = Field(default=None, gt=0)
    scheduler: Literal["none", "plateau"] = "none"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", True, False] = "auto"
    max_batches_per_epoch: int | None = Field(default=None, gt=0)
    max_eval_batches: int | None = Field(default=None, gt=0)
    eval_every: int = Field(default=1, gt=0, le=EPOCHS_MAX)
    freeze_extra_trainable: tuple[str, ...] = ()
    best_checkpoint: Literal["last_phase", "any"] = "last_phase"
    #: removed (never read; DataLoader workers are ``data.num_workers``): an old config that sets
    #: it loads with a warning; kept out of dumps, and only :meth:`TrainConfig.identity` reads it
    num_workers: int | None = Field(default=None, ge=0, le=WORKERS_MAX, exclude=True,
                                    deprecated="training.num_workers is ignored; use data.num_workers")

    @field_validator("num_workers")
    @classmethod
    def _removed_num_workers(cls, v: int | None) -> int | None:
        if v is not None:
            _warn_num_workers_once()
        return v

    @field_validator("amp", mode="before")
    @classmethod
    def _amp(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        return v


_warned_num_workers = False


def _warn_num_workers_once() -> None:
    global _warned_num_workers
    if not _warned_num_workers:
        _warned_num_workers = True
        print("warning: training.num_workers is ignored (it never had an effect); DataLoader workers are set "
              "by data.num_workers. Remove it from the config.", file=sys.stderr, flush=True)


class TrainConfig(BaseModel):
    """One training run: seed, data, model, training settings and an optional schedule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: Seed = 42
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    schedule: GrowthSchedule | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule_size(cls, v: GrowthSchedule | None, info: ValidationInfo) -> GrowthSchedule | None:
        model = info.data.get("model")
        if v is not None and v.events and model is not None:
            from growsearch.errors import ConfigError

            try:
                model.check_size(schedules=[v], what="")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    def identity(self) -> dict[str, Any]:
        """``model_dump(mode="json")`` as every hash of a config sees it (:meth:`config_hash`,
        the study's ``config_hash``, the run key and the prefix-cache key).

        It still holds the removed ``training.num_workers`` (its old value, 0 when unset), so
        the hashes of existing configs, studies and prefix caches stay what they were.
        """
        d = self.model_dump(mode="json")
        legacy = vars(self.training).get("num_workers")  # the one reader (no deprecation warning)
        d["training"]["num_workers"] = 0 if legacy is None else legacy
        return d

    def config_hash(self) -> str:
        """sha256 (16 hex digits) of what a replay must match to reproduce a trial: data, model
        and training settings (not the seed, which an export item carries, nor the schedule)."""
        import hashlib
        import json

        ident = {k: v for k, v in self.identity().items() if k not in ("seed", "schedule")}
        text = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, *, epochs: int | None = None, seed: int | None = None) -> TrainConfig:
        """A copy with ``training.epochs`` and/or ``seed`` replaced (CLI flags)."""
        upd: dict[str, Any] = {}
        if seed is not None:
            upd["seed"] = seed
        if epochs is not None:
            upd["training"] = self.training.model_copy(update={"epochs": epochs})
        return self.model_copy(update=upd) if upd else self


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config YAML.

    Raises:
        ConfigError: missing file, malformed YAML (with its line), unknown or bad key (with
            the key path and the value received), unknown backbone (listing the valid ones).
    """
    return load_model(TrainConfig, path, what="training config", kind="training config")
