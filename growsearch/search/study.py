"""Study configs: ``studies/*.yaml`` -> a frozen, fully resolved :class:`StudyConfig`.

Example::

    name: quickstart
    train: ../configs/quickstart.yaml     # a training config file, or inline {seed, data, model, training}
    space: ../search_spaces/quickstart.yaml
    epochs: 4                             # overrides training.epochs
    objectives: [dev_eer, {name: params, direction: minimize}]
    constraints: {max_params: 200000}     # optional: max_params, max_flops
    sampler: {name: nsga2, seed: 0, population_size: 4}   # nsga2 | nsga3 | tpe | gp | random | grid | growth
    budget: {trials: 8, wall_time: 20m}  # COMPLETE (+ PRUNED) trials, wall time and/or train_flops
    scheduler: none                       # or {name: moasha, rungs: [2, 4]} (see search/schedulers.py)
    reference: [baseline, ../schedules/paper_dropin.yaml]  # enqueued once
    storage: null                         # default sqlite:///<outputs>/study.db
    outputs: null                         # default runs/<name>
    execution: {cpus_per_trial: 1, gpus_per_trial: 0, max_concurrent: 2, retries: 2}

The training config's ``data.feature_cache`` (default true) makes every trial read the decoded
audio and front-end outputs from ``data.cache_dir``, by default
``<execution.shared_dir>/feature_cache`` (see :mod:`growsearch.data.feature_cache`); training is
bit-identical either way and neither key enters the config hash.

Relative paths are resolved against the study file's folder first, then the current
directory. Every error names the study file and the key (``studies/x.yaml: sampler.name: ...``).

The study's identity (:meth:`StudyConfig.config_hash`) covers what changes results: the
training config, the space, epochs, objectives, constraints, sampler and references; not
the budget, scheduler, storage, outputs or execution, so a study can be extended or moved (a
scheduler only decides which trials stop early: COMPLETE trials train to the end either way).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from growsearch.bounds import CPUS_MAX, EPOCHS_MAX, GPUS_MAX, TRIALS_MAX, Seed
from growsearch.errors import ConfigError, GrowsearchError
from growsearch.schedule import GrowthSchedule, legacy_spelling, load_schedules
from growsearch.search.objectives import Objective
from growsearch.search.schedulers import MoashaConfig, NoScheduler, PbgConfig, SchedulerConfig, parse_scheduler
from growsearch.search.space import SearchSpace, parse_space
from growsearch.vocabulary import EER, OBJECTIVES, SAMPLERS, Direction, SamplerName
from growsearch.yamlio import check_kind, did_you_mean, key_line, load_yaml, parse_model

__all__ = [
    "SAMPLERS",
    "Budget",
    "Constraints",
    "Execution",
    "Objective",
    "Reference",
    "SamplerConfig",
    "StudyConfig",
    "check_scheduler",
    "load_study_config",
    "parse_duration",
    "validate_study_name",
]


#: A study name: it names folders (Ray's experiment, the default outputs ``runs/<name>``),
#: so only letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit.
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
STUDY_NAME_MAX = 100


def validate_study_name(name: Any, source: str = "study name") -> str:
    """Return ``name`` if it is a valid study name, whatever it came from (a study YAML,
    ``--study-name``, a report command's ``STUDY`` argument).

    Raises:
        ConfigError: it is empty, too long, or holds anything but letters, digits, ``_``,
            ``.`` and ``-`` (so ``../x`` or ``a/b`` never reach a path).
    """
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or len(name) > STUDY_NAME_MAX or ".." in name:
        raise ConfigError(
            f"{source}: invalid study name {name!r}: use up to {STUDY_NAME_MAX} letters, digits, '_', '.' and '-', "
            "starting with a letter or digit (no '/' or '..')"
        )
    return name


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"20m"``, ``"1.5h"`` -> seconds.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 600, '20m' or '2h', got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"expected a duration such as 600, '20m' or '2h', got {value!r}")
    mult = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * mult


class Constraints(BaseModel):
    """Feasibility limits; infeasible trials are kept but ranked after feasible ones."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_params: float | None = Field(default=None, gt=0)
    max_flops: float | None = Field(default=None, gt=0)

    def active(self) -> bool:
        return self.max_params is not None or self.max_flops is not None

    def values(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Optuna constraint values by name (``<= 0`` is feasible) for a run's metrics."""
        out: dict[str, float] = {}
        if self.max_params is not None:
            out["max_params"] = float(metrics.get("params", float("inf"))) - self.max_params
        if self.max_flops is not None:
            out["max_flops"] = float(metrics.get("flops", float("inf"))) - self.max_flops
        return out


class SamplerConfig(BaseModel):
    """Which Optuna sampler proposes schedules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: SamplerName = "nsga2"
    seed: Seed = 0
    population_size: int | None = Field(default=None, ge=2, le=TRIALS_MAX)


class Budget(BaseModel):
    """When the search stops: a number of finished trials in the study (COMPLETE, and PRUNED
    when a scheduler stops trials early; over all sessions), a wall time in seconds for one
    ``growsearch run`` session (trials cut off by it are re-enqueued and rerun by the next
    session), and/or the training FLOPs recorded by the study's trials (``train_flops``:
    COMPLETE trials' ``train_flops`` plus what PRUNED trials spent before they stopped; no
    trial is proposed once they reach it, running trials finish)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    trials: int | None = Field(default=None, gt=0, le=TRIALS_MAX)
    wall_time: float | None = Field(default=None, gt=0, le=366 * 86400)
    train_flops: float | None = Field(default=None, gt=0)

    @field_validator("wall_time", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.trials is None and self.wall_time is None and self.train_flops is None:
            raise ValueError("set trials, wall_time and/or train_flops")
        return self


class Execution(BaseModel):
    """Where trials run.

    Attributes:
        address: an existing Ray cluster (``ray://...`` or ``host:port``); ``None`` starts
            Ray locally with ``num_cpus``/``num_gpus``.
        num_cpus: CPUs of a local Ray (``None``: all of this machine's).
        num_gpus: GPUs of a local Ray (``None``: Ray detects them).
        cpus_per_trial / gpus_per_trial: resources of one trial (``tune.with_resources``).
        max_concurrent: trials at once (``None``: as many as resources allow).
        retries: restarts of a crashed trial (Tune ``max_failures``) before it is FAIL.
        heartbeat_max_failures: failed heartbeats in a row (one every ``HEARTBEAT_INTERVAL``
            seconds) after which this driver stops, its running trials re-enqueued, rather
            than let its lease go stale while other drivers reap its live trials.
        shared_dir: a folder every node sees, for trial checkpoints and the prefix cache
            (``None``: the outputs folder).
        prefix_reuse: reuse the training state of schedule prefixes that trials share (the
            baseline epochs, and grown phases schedules have in common); see
            :mod:`growsearch.train.prefix_cache`.
        prefix_cache_max_gb: size limit of the prefix cache in GiB; least recently used
            entries are evicted beyond it.
        prefix_wait_s: the longest a starting trial waits for a shared prefix that another
            running trial is training, instead of training the same epochs itself
            (:mod:`growsearch.train.prefix_claims`; 0: never wait).
        crash_at_epoch: test hook: the trial process exits hard after this epoch's
            checkpoint on its first attempt (to test worker restarts).
        epoch_delay_s: test hook: the trial sleeps this long after each epoch, so that tests
            of killing and interrupting a study catch trials running whatever the machine's
            speed (0: off).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    address: str | None = None
    num_cpus: int | None = Field(default=None, gt=0, le=CPUS_MAX)
    num_gpus: int | None = Field(default=None, ge=0, le=GPUS_MAX)
    cpus_per_trial: float = Field(default=1.0, gt=0, le=CPUS_MAX)
    gpus_per_trial: float = Field(default=0.0, ge=0, le=GPUS_MAX)
    max_concurrent: int | None = Field(default=None, gt=0, le=TRIALS_MAX)
    retries: int = Field(default=2, ge=0, le=1000)
    heartbeat_max_failures: int = Field(default=10, ge=1, le=1000)
    shared_dir: str | None = None
    prefix_reuse: bool = True
    prefix_cache_max_gb: float = Field(default=10.0, gt=0, le=1e6)
    prefix_wait_s: float = Field(default=3600.0, ge=0, le=7 * 86400)
    crash_at_epoch: int | None = Field(default=None, ge=0, le=EPOCHS_MAX)
    epoch_delay_s: float = Field(default=0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _fits_local_ray(self) -> Execution:
        """A trial asking for more than a local Ray of ``num_cpus``/``num_gpus`` has would wait forever."""
        if self.address is None and self.num_cpus is not None and self.cpus_per_trial > self.num_cpus:
            raise ValueError(f"cpus_per_trial {self.cpus_per_trial:g} is more than num_cpus {self.num_cpus} of the local Ray: "
                             "no trial could ever start")
        if self.address is None and self.num_gpus is not None and self.gpus_per_trial > self.num_gpus:
            raise ValueError(f"gpus_per_trial {self.gpus_per_trial:g} is more than num_gpus {self.num_gpus} of the local Ray: "
                             "no trial could ever start")
        return self


class Reference(BaseModel):
    """A hand-written schedule enqueued once, e.g. ``baseline`` (no growth)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1)
    schedule: GrowthSchedule
    source: str | None = None


class StudyConfig(BaseModel):
    """A fully resolved study (see the module docstring for the YAML).

    Attributes:
        name: the Optuna study name.
        train: the training config (``training.epochs`` already set to :attr:`epochs`).
        space: the search space, bound to the backbone and the run.
        objectives: what is optimised (study metric names).
        raw: the study YAML as read (stored in the study's ``config`` user attr).
        path: the study file (``None`` when built from a dict).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(min_length=1, max_length=STUDY_NAME_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    train: Any
    space: SearchSpace
    epochs: int = Field(gt=0)
    objectives: tuple[Objective, ...] = (Objective(name=EER), Objective(name="params"))
    constraints: Constraints = Constraints()
    sampler: SamplerConfig = SamplerConfig()
    budget: Budget
    scheduler: SchedulerConfig = NoScheduler()
    reference: tuple[Reference, ...] = ()
    storage: str | None = None
    outputs: str
    execution: Execution = Execution()
    raw: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple):
            return [{"name": o} if isinstance(o, str) else o for o in v]
        return v

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        names = [o.name for o in self.objectives]
        if not names:
            raise ValueError("objectives: needs at least one of " + ", ".join(OBJECTIVES))
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: duplicate names {names}")
        return self

    # ---- derived -------------------------------------------------------------------------
    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def directions(self) -> list[Direction]:
        return [o.direction for o in self.objectives]

    @property
    def outputs_dir(self) -> Path:
        return Path(self.outputs).expanduser().resolve()

    @property
    def default_storage(self) -> str:
        return "sqlite:///" + str(self.outputs_dir / "study.db")

    @property
    def shared_dir(self) -> Path:
        return Path(self.execution.shared_dir).expanduser().resolve() if self.execution.shared_dir else self.outputs_dir

    def identity(self) -> dict[str, Any]:
        """What defines the study's results (hashed by :meth:`config_hash`)."""
        return {
            "train": self.train.identity(),
            "space": legacy_spelling(self.space.model_dump(mode="json")),  # hashes of studies made before optimizer_state
            "epochs": self.epochs,
            "objectives": [o.model_dump() for o in self.objectives],
            "constraints": self.constraints.model_dump(),
            "sampler": self.sampler.model_dump(),
            "reference": [{"label": r.label, "schedule": legacy_spelling(r.schedule.to_dict())} for r in self.reference],
        }

    def config_hash(self) -> str:
        """sha256 (first 16 hex digits) of :meth:`identity` as canonical JSON."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(
        self, *, name: str | None = None, trials: int | None = None, storage: str | None = None, address: str | None = None
    ) -> StudyConfig:
        """A copy with command-line overrides applied."""
        upd: dict[str, Any] = {}
        if name is not None:
            upd["name"] = validate_study_name(name, "--study-name")
        if trials is not None:
            upd["budget"] = self.budget.model_copy(update={"trials": trials})
        if storage:
            upd["storage"] = storage
        if address:
            upd["execution"] = self.execution.model_copy(update={"address": address})
        return self.model_copy(update=upd) if upd else self


def smoke_config(cfg: StudyConfig) -> StudyConfig:
    """The ``--smoke`` variant: study ``<name>-smoke`` in ``<outputs>-smoke``, 2 trials,
    at most 2 batches per epoch and 2 evaluation batches (the pipeline end to end, quickly)."""
    tr = cfg.train
    training = tr.training.model_copy(update={"max_batches_per_epoch": 2, "max_eval_batches": 2})
    return cfg.model_copy(
        update={
            "name": f"{cfg.name}-smoke",
            "outputs": f"{cfg.outputs}-smoke",
            "train": tr.model_copy(update={"training": training}),
            "budget": Budget(trials=2),
            "reference": cfg.reference[:1],
        }
    )


def _resolve(p: str, base: Path) -> Path:
    q = Path(os.path.expandvars(str(p))).expanduser()
    if q.is_absolute():
        return q
    if (base / q).exists():
        return base / q
    return Path.cwd() / q


def parse_study_config(data: Any, source: str = "study", *, base: Path | None = None) -> StudyConfig:
    """Validate a study mapping (as read from YAML) into a resolved :class:`StudyConfig`.

    Raises:
        ConfigError: any bad key or value, naming ``source`` and the key path; errors in the
            referenced training config, space or schedule files name those files.
    """
    from growsearch.train.config import TrainConfig, load_train_config

    base = base or Path.cwd()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _check_top_keys(data, source)
    raw = dict(data)
    d = dict(data)
    for key in ("train", "space", "budget"):
        if key not in d:
            raise ConfigError(f"{source}: {key}: required key is missing")
    # training config: a path or inline
    tr = d["train"]
    if isinstance(tr, str):
        train = load_train_config(_resolve(tr, base))
    elif isinstance(tr, dict):
        train = parse_model(TrainConfig, tr, f"{source}: train")
    else:
        raise ConfigError(f"{source}: train: expected a path or a mapping, got {type(tr).__name__}")
    epochs = d.get("epochs", train.training.epochs)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"{source}: epochs: expected a positive integer (got {epochs!r})")
    train = train.with_overrides(epochs=epochs)
    d["train"] = train
    d["epochs"] = epochs
    # search space: a path or inline, bound to the backbone and the run
    sp = d["space"]
    if isinstance(sp, str):
        sp_path = _resolve(sp, base)
        sp_data, sp_src = load_yaml(sp_path, what="search space"), f"{sp_path} (space of {source}, epochs {epochs})"
    elif isinstance(sp, dict):
        sp_data, sp_src = sp, f"{source}: space"
    else:
        raise ConfigError(f"{source}: space: expected a path or a mapping, got {type(sp).__name__}")
    d["space"] = parse_space(sp_data, sp_src, epochs=epochs, preset=train.model.preset, backbone=train.model.backbone)
    try:  # the largest model the space can propose, counted on the meta device
        train.model.check_size(space=d["space"], what=f"{source}: space")
    except ConfigError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(source) else f"{source}: space: {exc}") from None
    # references: "baseline", a schedule file, or {label, schedule}
    refs = d.get("reference") or []
    if not isinstance(refs, list):
        raise ConfigError(f"{source}: reference: expected a list (baseline and/or schedule files), got {type(refs).__name__}")
    points = d["space"].growth_points
    out_refs = []
    for i, r in enumerate(refs):
        where = f"{source}: reference[{i}]"
        try:
            if r == "baseline":
                ref = Reference(label="baseline", schedule=GrowthSchedule.empty())
            elif isinstance(r, str):
                p = _resolve(r, base)
                s = load_schedules(p)[0]
                ref = Reference(label=s.label or p.stem, schedule=s, source=str(p))
            elif isinstance(r, dict) and set(r) <= {"label", "schedule"} and "schedule" in r:
                s_in = r["schedule"]
                s = load_schedules(_resolve(s_in, base))[0] if isinstance(s_in, str) else GrowthSchedule.from_dict(s_in, source=where + ".schedule")
                ref = Reference(label=str(r.get("label") or s.label or f"reference{i}"), schedule=s)
            else:
                raise ConfigError(f"{where}: expected 'baseline', a schedule file or {{label, schedule}}, got {r!r}")
            ref.schedule.validate_for(points, epochs, source=where)
        except GrowsearchError as exc:
            raise ConfigError(str(exc) if str(exc).startswith(source) else f"{where}: {exc}") from None
        try:
            train.model.check_size(schedules=[ref.schedule], what=where)
        except ConfigError as exc:
            raise ConfigError(str(exc) if str(exc).startswith(source) else f"{where}: {exc}") from None
        out_refs.append(ref)
    labels = [r.label for r in out_refs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{source}: reference: duplicate labels {labels}")
    d["reference"] = out_refs
    sampler = d.get("sampler")
    if isinstance(sampler, dict) and sampler.get("name") in ("grid", "growth"):
        try:
            d["space"].grid(sampler=str(sampler["name"]))
        except ConfigError as exc:
            raise ConfigError(f"{source}: sampler.name: {exc}") from None
    d["scheduler"] = parse_scheduler(d.get("scheduler"), source, epochs=epochs, lines=data)
    if "name" in d:
        validate_study_name(d["name"], f"{source}: name")
    d.setdefault("outputs", None)
    if d["outputs"] is None:
        d["outputs"] = str(Path("runs") / str(d.get("name", "study")))
    elif isinstance(d["outputs"], str):
        d["outputs"] = str(_resolve(d["outputs"], Path.cwd()))
    d["raw"] = json.loads(json.dumps(raw, default=str))
    if isinstance(d["raw"].get("storage"), str):  # the study records its config: never a password
        from growsearch.redact import redact_url

        d["raw"]["storage"] = redact_url(d["raw"]["storage"])
    d["path"] = source
    cfg = parse_model(StudyConfig, d, source, lines=data)
    check_scheduler(cfg, data)
    return cfg


def check_scheduler(cfg: StudyConfig, data: Any = None) -> None:
    """What the study's scheduler needs from the rest of the study (also after ``--trials``):
    ``dev_eer`` among the objectives; for ``pbg``, a population within ``budget.trials`` and
    the shared-prefix cache (a child starts from its parent's state there).

    Raises:
        ConfigError: one line naming the key.
    """
    sched = cfg.scheduler
    if isinstance(sched, NoScheduler):
        return
    source = cfg.path or "study"

    def where(*loc: str) -> str:
        line = key_line(data, ("scheduler", *loc)) if data is not None else None
        return f"{source}:{line}" if line else source

    what = "at each rung" if isinstance(sched, MoashaConfig) else "at each boundary"
    if EER not in cfg.objective_names:
        raise ConfigError(f"{where()}: scheduler: {sched.name} judges trials by {EER} {what}; add {EER} to the objectives")
    if isinstance(sched, PbgConfig):
        if cfg.budget.trials is not None and sched.population > cfg.budget.trials:
            raise ConfigError(f"{where('population')}: scheduler.population: a population of {sched.population} is larger "
                              f"than the trial budget (budget.trials: {cfg.budget.trials})")
        if not cfg.execution.prefix_reuse:
            raise ConfigError(f"{where()}: scheduler: pbg starts each child from its parent's state in the shared-prefix "
                              "cache; set execution.prefix_reuse: true")


def _check_top_keys(data: Any, source: str) -> None:
    """The file is a study and has no unknown top-level key (checked before anything heavy is read)."""
    check_kind(data, source, "study")
    if isinstance(data, dict):
        fields = [k for k in StudyConfig.model_fields if k not in ("raw", "path")]
        for k in data:
            if k not in fields:
                raise ConfigError(validation_message_for_key(data, source, k, fields))


def validation_message_for_key(data: Any, source: str, key: Any, valid: list[str]) -> str:
    """``source:line: key: unknown key; did you mean ...`` for an unknown top-level key."""
    line = key_line(data, (key,))
    where = f"{source}:{line}" if line else source
    hint = did_you_mean(str(key), valid) or f"; valid keys: {', '.join(sorted(valid))}"
    return f"{where}: {key}: unknown key{hint}"


def study_location(path: str | Path) -> tuple[str, str | None, Path]:
    """Name, explicit storage (or ``None``) and outputs folder of a study YAML, without
    reading its training config, space or references (what the report commands need: no
    torch, no backbone is built).

    Raises:
        ConfigError: the file is missing or malformed, not a study, has an unknown top-level
            key, or a bad ``name``/``storage``/``outputs``.
    """
    p = Path(path)
    source = str(p)
    data = load_yaml(p, what="study")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _check_top_keys(data, source)
    name = data.get("name")
    if not isinstance(name, str) or not re.match(StudyConfig.model_fields["name"].metadata[-1].pattern, name):
        raise ConfigError(f"{source}: name: expected a study name of letters, digits, '_', '.', '-' (got {name!r})")
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise ConfigError(f"{source}: storage: expected a URL (got {storage!r})")
    outputs = data.get("outputs")
    if outputs is None:
        out = Path("runs") / name
    elif isinstance(outputs, str):
        out = _resolve(outputs, Path.cwd())
    else:
        raise ConfigError(f"{source}: outputs: expected a folder (got {outputs!r})")
    return name, storage, out.expanduser().resolve()


def load_study_config(path: str | Path) -> StudyConfig:
    """Read ``studies/<name>.yaml``.

    Raises:
        ConfigError: see :func:`parse_study_config`.
    """
    p = Path(path)
    return parse_study_config(load_yaml(p, what="study"), str(p), base=p.resolve().parent)
