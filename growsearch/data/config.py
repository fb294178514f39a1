"""The data section of a study or training config: which corpus, where, and how to cut it.

Example (YAML)::

    data:
      dataset: asvspoof2019_la        # asvspoof2019_la | asvspoof2019_pa | fakeorreal | synthetic
      root: null                      # null -> $GROWSEARCH_ASVSPOOF2019_LA
      clip_samples: 64600
      max_per_class: {train: 500, dev: 500}   # quick runs: at most N bona fide and N spoof
      max_per_attack: {train: 100}            # at most N utterances per attack (bona fide = one group)
      subset_seed: 0                  # which subset is drawn (fixed across trials by default)
      on_bad_file: error              # error | skip (skipped files are listed, never silent)
      num_workers: 0
      feature_cache: true             # decode + featurize once, shared by all trials (see below)
      cache_dir: null                 # null -> <execution.shared_dir>/feature_cache in a study

Roots: ``root`` may point at the corpus folder itself (``.../LA`` holding
``ASVspoof2019_LA_cm_protocols``) or at its parent (holding ``LA/``); for FakeOrReal at
the folder holding ``for-norm/`` etc. or at the variant folder itself. When ``root`` is
null the environment variable of the dataset is used (:data:`ROOT_ENV`); for
``synthetic`` the default is ``data/synth`` relative to the working directory, generated
on first use from ``synth_seed`` and ``synth_size``.

Feature cache (:mod:`growsearch.data.feature_cache`): with ``feature_cache: true`` (the
default) the decoded audio and the front-end outputs are computed once per corpus, split and
front-end and read by every trial; training is bit-identical to ``false``, so neither key
enters the config hash, run keys or prefix keys. ``cache_dir`` null means
``<execution.shared_dir>/feature_cache`` in a study (the outputs folder when that is unset)
and ``$GROWSEARCH_CACHE_DIR/features`` (else ``~/.cache/growsearch/features``) for
``growsearch train``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from growsearch.bounds import CLIP_SAMPLES_MAX, WORKERS_MAX, Seed
from growsearch.errors import DataError

Dataset = Literal["asvspoof2019_la", "asvspoof2019_pa", "fakeorreal", "synthetic"]
DATASETS: tuple[str, ...] = ("asvspoof2019_la", "asvspoof2019_pa", "fakeorreal", "synthetic")
ForVariant = Literal["for-norm", "for-2seconds", "for-rerecorded", "for-original"]
FOR_VARIANTS: tuple[str, ...] = ("for-norm", "for-2seconds", "for-rerecorded", "for-original")
SynthSize = Literal["tiny", "small", "medium", "large", "bench"]

#: Environment variable read when ``root`` is null.
ROOT_ENV: dict[str, str] = {
    "asvspoof2019_la": "GROWSEARCH_ASVSPOOF2019_LA",
    "asvspoof2019_pa": "GROWSEARCH_ASVSPOOF2019_PA",
    "fakeorreal": "GROWSEARCH_FOR_ROOT",
}
#: Where the synthetic corpus lives when ``root`` is null (relative to the working dir).
SYNTH_DEFAULT_ROOT = Path("data/synth")
SPLITS: tuple[str, ...] = ("train", "dev", "eval")


class SplitLimits(BaseModel):
    """A cap per split; null means no cap for that split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: int | None = Field(default=None, gt=0)
    dev: int | None = Field(default=None, gt=0)
    eval: int | None = Field(default=None, gt=0)

    def get(self, split: str) -> int | None:
        """The cap of ``split`` (``train``, ``dev`` or ``eval``)."""
        return getattr(self, split)


class DataConfig(BaseModel):
    """Which corpus to load and how. Frozen; unknown keys are an error.

    Attributes:
        dataset: corpus name, one of :data:`DATASETS`.
        root: corpus folder, or null to use :data:`ROOT_ENV` (synthetic: ``data/synth``).
        variant: FakeOrReal variant (default ``for-norm``); only valid for ``fakeorreal``.
        clip_samples: fixed length L of every item (16 kHz samples).
        max_per_class: stratified cap of bona fide and of spoof items per split.
        max_per_attack: cap of items per attack (bona fide counts as one attack) per split.
        subset_seed: seed of the subsampling draw (independent of the training seed, so
            trials with different seeds see the same subset).
        on_bad_file: ``error`` stops at the first bad file; ``skip`` leaves it out and
            records it in the dataset's ``.skipped`` (with a warning).
        num_workers: DataLoader workers.
        synth_seed: seed of the generated corpus (synthetic only).
        synth_size: size of the generated corpus (synthetic only): ``tiny``, ``small``, ``medium``,
            ``large``, or ``bench`` (a harder profile where model width matters; see
            :mod:`growsearch.data.synthetic_bench`).
        feature_cache: read decoded audio / front-end outputs from the shared cache (exact;
            excluded from dumps and hashes).
        cache_dir: the cache folder (null: the study's shared folder, or the machine's
            cache for ``growsearch train``; excluded from dumps and hashes).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: Dataset
    root: Path | None = None
    variant: ForVariant | None = None
    clip_samples: int = Field(default=64_600, gt=0, le=CLIP_SAMPLES_MAX)
    max_per_class: SplitLimits | None = None
    max_per_attack: SplitLimits | None = None
    subset_seed: Seed = 0
    on_bad_file: Literal["error", "skip"] = "error"
    num_workers: int = Field(default=0, ge=0, le=WORKERS_MAX)
    synth_seed: Seed = 0
    synth_size: SynthSize = "small"
    feature_cache: bool = Field(default=True, exclude=True)
    cache_dir: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _variant_only_for_for(self) -> DataConfig:
        if self.variant is not None and self.dataset != "fakeorreal":
            raise ValueError(f"variant is only valid for dataset fakeorreal, not {self.dataset!r}")
        return self

    @property
    def for_variant(self) -> str:
        """The FakeOrReal variant in use (``for-norm`` when not set)."""
        return self.variant or "for-norm"

    def resolved_root(self) -> Path:
        """The corpus root: ``root``, else the dataset's environment variable.

        For ``synthetic`` the default ``data/synth`` may not exist yet (it is generated on
        first use by :func:`growsearch.data.build_splits`).

        Raises:
            DataError: no root given and the environment variable is unset or empty, or
                the root does not exist.
        """
        if self.root is not None:
            root = Path(os.path.expanduser(str(self.root)))
            if self.dataset != "synthetic" and not root.is_dir():
                raise DataError(f"data.root: {root} ({self.dataset}) does not exist or is not a directory")
            return root
        if self.dataset == "synthetic":
            return SYNTH_DEFAULT_ROOT
        env = ROOT_ENV[self.dataset]
        value = os.environ.get(env, "").strip()
        if not value:
            raise DataError(
                f"data.root is not set for {self.dataset} and ${env} is empty; set data.root "
                f"or export {env}=/path/to/the/corpus"
            )
        root = Path(os.path.expanduser(value))
        if not root.is_dir():
            raise DataError(f"${env}={value}: {self.dataset} root does not exist or is not a directory")
        return root
