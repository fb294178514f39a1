"""The study schema: every study and trial attribute growsearch reads or writes, defined once.

Each attribute is an :class:`Attr`: its key in the database (these strings are the file
format and never change), the Python type of its value, and typed ``get``/``set``.
``get`` takes a study, a trial (``optuna.Trial`` or ``FrozenTrial``) or an attribute dict
and returns ``None`` when the attribute is absent or has another type; ``set`` takes a
study or a trial::

    TRIAL_SCHEDULE.set(trial, schedule.to_dict())
    sched = TRIAL_SCHEDULE.get(frozen_trial)          # dict | None
    enqueue_trial({}, user_attrs={TRIAL_REFERENCE.key: label, ...})

Trial user attrs (``TRIAL_*``), study user attrs (``STUDY_*``), the per-driver lease
(:func:`lease_attr`), and the system attrs Optuna itself writes (``OPTUNA_*``, keys only:
growsearch reads them, Optuna writes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from growsearch.search.objectives import Objective
from growsearch.vocabulary import DEFAULT_DIRECTION, DIRECTIONS

__all__ = [
    "LEASE_PREFIX",
    "OPTUNA_CONSTRAINTS",
    "OPTUNA_CONSTRAINT_PREFIX",
    "OPTUNA_FAIL_REASON",
    "OPTUNA_FIXED_PARAMS",
    "PREFIX_EPOCHS_REUSED",
    "PREFIX_FLOPS_SAVED",
    "STUDY_ATTRS",
    "STUDY_CONFIG",
    "STUDY_CONFIG_HASH",
    "STUDY_FLOPS_DEFINITION",
    "STUDY_LEGACY_LEASE",
    "STUDY_OBJECTIVES",
    "STUDY_PREFIX_REUSE",
    "STUDY_TRAIN_CONFIG_HASH",
    "TRIAL_ATTEMPT",
    "TRIAL_ATTRS",
    "TRIAL_CONSTRAINT",
    "TRIAL_CURVES",
    "TRIAL_DRIVER",
    "TRIAL_DUPLICATE_OF",
    "TRIAL_FAIL_REASON",
    "TRIAL_LINEAGE",
    "TRIAL_METRICS",
    "TRIAL_NODE",
    "TRIAL_PROMOTED_FROM",
    "TRIAL_PRUNED",
    "TRIAL_RAY_TRIAL_ID",
    "TRIAL_REFERENCE",
    "TRIAL_REQUEUED_FROM",
    "TRIAL_RUNGS",
    "TRIAL_SCHEDULE",
    "TRIAL_SEED",
    "VERSIONS",
    "Attr",
    "lease_attr",
    "set_study_objectives",
    "study_objectives",
    "trial_fail_reason",
    "trial_prefix_reuse",
]

T = TypeVar("T")


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> Mapping[str, Any]: ...


class _SetsUserAttrs(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class Attr(Generic[T]):
    """One user attr: ``key`` in the database, the ``kind`` of its value, study or trial level.

    Attributes:
        key: the attribute's name in the study database.
        kind: the type its value has (a JSON type: ``dict``, ``list``, ``str``, ``int``).
        level: ``"trial"``, ``"study"`` or ``"study, trial"`` (written on both).
        doc: what it holds.
    """

    key: str
    kind: type
    level: Literal["trial", "study", "study, trial"]
    doc: str

    def get(self, source: _HasUserAttrs | Mapping[str, Any]) -> T | None:
        """The value in ``source`` (a study, a trial or a user-attr dict); ``None`` when it is
        absent or not a ``kind``."""
        values: Mapping[str, Any] = source if isinstance(source, Mapping) else source.user_attrs
        v = values.get(self.key)
        return cast("T", v) if isinstance(v, self.kind) else None

    def set(self, target: _SetsUserAttrs, value: T) -> None:
        """Write ``value`` on ``target`` (a study or a trial)."""
        target.set_user_attr(self.key, value)


# ---- trial user attrs --------------------------------------------------------------------
TRIAL_SCHEDULE: Attr[dict[str, Any]] = Attr("schedule", dict, "trial", "the decoded schedule, GrowthSchedule.to_dict()")
TRIAL_REFERENCE: Attr[str] = Attr("reference", str, "trial",
                                  "the label of an enqueued reference trial (baseline, paper-dropin); absent for searched trials")
TRIAL_CURVES: Attr[dict[str, list[float]]] = Attr("curves", dict, "trial",
                                                  "per-epoch curves: {dev_eer, train_loss, params, flops: [...]}")
TRIAL_METRICS: Attr[dict[str, Any]] = Attr("metrics", dict, "trial",
                                           "the run's metrics.json minus curves (prefix-cache reuse: see trial_prefix_reuse)")
TRIAL_SEED: Attr[int] = Attr("seed", int, "trial", "the training seed")
TRIAL_FAIL_REASON: Attr[str] = Attr("fail_reason", str, "trial", "why a FAIL trial failed (see trial_fail_reason)")
TRIAL_DRIVER: Attr[str] = Attr("driver", str, "trial", "the token of the driver that ran the trial (its lease: lease_attr)")
TRIAL_DUPLICATE_OF: Attr[int] = Attr("duplicate_of", int, "trial",
                                     "the number of the trial whose schedule this proposal repeats (FAIL, never trained)")
TRIAL_RAY_TRIAL_ID: Attr[str] = Attr("ray_trial_id", str, "trial", "Ray Tune's id of the trial")
TRIAL_NODE: Attr[dict[str, str]] = Attr("node", dict, "trial", "where it ran: {hostname, node_id}")
TRIAL_ATTEMPT: Attr[dict[str, Any]] = Attr("attempt", dict, "trial",
                                           "{attempts, resumed_checkpoint} plus resumed_from_trial when a rerun continued a checkpoint")
TRIAL_CONSTRAINT: Attr[list[float]] = Attr("constraint", list, "trial", "the constraint values, in the study's order (<= 0: feasible)")
TRIAL_REQUEUED_FROM: Attr[int] = Attr("requeued_from", int, "trial", "the number of the trial this one reruns")
TRIAL_RUNGS: Attr[dict[str, float]] = Attr("rungs", dict, "trial",
                                           "a scheduler's rung evidence: {epochs trained (as a string): dev EER then}")
TRIAL_PRUNED: Attr[dict[str, Any]] = Attr("pruned", dict, "trial",
                                          "why a scheduler stopped a PRUNED trial: {scheduler, rung, epoch, reason, "
                                          "curves, train_flops, checkpoint} (checkpoint: its resumable state.pt)")
TRIAL_PROMOTED_FROM: Attr[int] = Attr("promoted_from", int, "trial",
                                     "the PRUNED trial a later MOASHA decision promoted: this one resumes its checkpoint")
TRIAL_LINEAGE: Attr[dict[str, Any]] = Attr("lineage", dict, "trial",
                                           "a population-based-growth child: {scheduler, parent, boundary, replaces, "
                                           "generation} (it continues the parent's state after boundary epochs)")

# ---- study user attrs --------------------------------------------------------------------
STUDY_CONFIG: Attr[dict[str, Any]] = Attr("config", dict, "study", "the study YAML as a dict")
STUDY_CONFIG_HASH: Attr[str] = Attr("config_hash", str, "study", "StudyConfig.config_hash(): what defines the results")
STUDY_OBJECTIVES: Attr[list[dict[str, str]]] = Attr("objectives", list, "study",
                                                    "[{name, direction}] (see study_objectives)")
STUDY_TRAIN_CONFIG_HASH: Attr[str] = Attr("train_config_hash", str, "study",
                                          "data + model + training of its trials; an export carries it")
STUDY_FLOPS_DEFINITION: Attr[str] = Attr("flops_definition", str, "study",
                                         "the FLOPs definition of its trials ('mixed: a + b' when resumed across definitions)")
STUDY_PREFIX_REUSE: Attr[dict[str, Any]] = Attr("prefix_reuse", dict, "study", "training FLOPs saved by the shared-prefix cache")
STUDY_LEGACY_LEASE: Attr[dict[str, Any]] = Attr("driver", dict, "study",
                                                "the single driver lease of older growsearch versions (read only)")

# ---- both --------------------------------------------------------------------------------
VERSIONS: Attr[dict[str, str]] = Attr("versions", dict, "study, trial", "package versions")

#: Study user attr prefix of a driver's lease: ``driver:<token>`` = ``{host, pid, token, beat, stopped}``.
LEASE_PREFIX = "driver:"


def lease_attr(token: str) -> Attr[dict[str, Any]]:
    """The study user attr holding the lease of the driver with ``token``."""
    return Attr(LEASE_PREFIX + token, dict, "study", "a driver's lease: {host, pid, token, beat, stopped, ended}")


TRIAL_ATTRS: tuple[Attr[Any], ...] = (
    TRIAL_SCHEDULE, TRIAL_REFERENCE, TRIAL_CURVES, TRIAL_METRICS, TRIAL_SEED, TRIAL_FAIL_REASON, TRIAL_DRIVER,
    TRIAL_DUPLICATE_OF, TRIAL_RAY_TRIAL_ID, TRIAL_NODE, TRIAL_ATTEMPT, TRIAL_CONSTRAINT, TRIAL_REQUEUED_FROM, TRIAL_RUNGS,
    TRIAL_PRUNED, TRIAL_LINEAGE, TRIAL_PROMOTED_FROM, VERSIONS,
)
STUDY_ATTRS: tuple[Attr[Any], ...] = (
    STUDY_CONFIG, STUDY_CONFIG_HASH, STUDY_OBJECTIVES, STUDY_TRAIN_CONFIG_HASH, STUDY_FLOPS_DEFINITION,
    STUDY_PREFIX_REUSE, STUDY_LEGACY_LEASE, VERSIONS,
)

# ---- system attrs Optuna writes ----------------------------------------------------------
#: The reason older Optuna versions recorded on a trial that raised inside ``optimize``
#: (Optuna 5 records none; still read, see :func:`trial_fail_reason`).
OPTUNA_FAIL_REASON = "fail_reason"
#: A trial's constraint values as one list (a sampler's ``constraints_func``, ``create_trial``).
OPTUNA_CONSTRAINTS = "constraints"
#: ``Trial.set_constraint(key, value)`` records one system attr ``constraints:<key>`` per constraint.
OPTUNA_CONSTRAINT_PREFIX = OPTUNA_CONSTRAINTS + ":"
#: Optuna's fixed parameters of an enqueued (WAITING) trial.
OPTUNA_FIXED_PARAMS = "fixed_params"


def trial_fail_reason(trial: Any) -> str | None:
    """Why ``trial`` (a ``FrozenTrial``) failed: growsearch's ``fail_reason`` user attr, else
    Optuna's ``fail_reason`` system attr, else ``None``."""
    r = trial.user_attrs.get(TRIAL_FAIL_REASON.key) or trial.system_attrs.get(OPTUNA_FAIL_REASON)
    return str(r) if r else None


#: The fields of a trial's ``metrics`` that say what the prefix cache saved it: the epochs it
#: loaded instead of training them, and their training FLOPs.
PREFIX_EPOCHS_REUSED = "prefix_epochs_reused"
PREFIX_FLOPS_SAVED = "train_flops_saved"
PREFIX_WAIT_S = "prefix_wait_s"


def trial_prefix_reuse(source: _HasUserAttrs | Mapping[str, Any]) -> dict[str, Any] | None:
    """What the prefix cache saved a trial: ``{"epochs", "train_flops", "wait_s"}`` (``wait_s``: seconds
    it waited for a prefix another trial was training); ``None`` when not recorded.

    Args:
        source: a trial, its user-attr dict, or its ``metrics`` dict itself.
    """
    values: Mapping[str, Any] = source if isinstance(source, Mapping) else source.user_attrs
    m = values if PREFIX_EPOCHS_REUSED in values else TRIAL_METRICS.get(values)
    if not isinstance(m, Mapping) or not isinstance(m.get(PREFIX_EPOCHS_REUSED), int):
        return None
    return {"epochs": int(m[PREFIX_EPOCHS_REUSED]), "train_flops": float(m.get(PREFIX_FLOPS_SAVED) or 0.0),
            "wait_s": float(m.get(PREFIX_WAIT_S) or 0.0)}


def study_objectives(study: _HasUserAttrs | Mapping[str, Any]) -> list[Objective] | None:
    """The study's ``objectives`` attr as objectives (taken as recorded); ``None`` when
    absent or not a list of ``{name, direction}``."""
    v = STUDY_OBJECTIVES.get(study)
    if v is None or not all(isinstance(o, dict) and "name" in o and o.get("direction", DEFAULT_DIRECTION) in DIRECTIONS for o in v):
        return None
    return [Objective.recorded(str(o["name"]), o.get("direction", DEFAULT_DIRECTION)) for o in v]


def set_study_objectives(study: _SetsUserAttrs, objectives: Sequence[Objective]) -> None:
    """Record ``objectives`` on ``study`` as ``[{name, direction}]``."""
    STUDY_OBJECTIVES.set(study, [{"name": o.name, "direction": o.direction} for o in objectives])
