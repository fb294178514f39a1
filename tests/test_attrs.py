"""The study schema (growsearch.search.attrs) and the objective vocabulary on real SQLite
studies: every attribute round-trips through its typed helpers, the database keys are the
file format (a renamed constant must not rename the attribute), and the system attrs
growsearch reads are the keys Optuna writes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from growsearch.errors import ConfigError
from growsearch.report.front import objectives_of
from growsearch.search import attrs
from growsearch.search.attrs import (
    LEASE_PREFIX,
    OPTUNA_CONSTRAINT_PREFIX,
    OPTUNA_CONSTRAINTS,
    OPTUNA_FAIL_REASON,
    OPTUNA_FIXED_PARAMS,
    STUDY_ATTRS,
    STUDY_CONFIG_HASH,
    TRIAL_ATTRS,
    TRIAL_FAIL_REASON,
    TRIAL_SCHEDULE,
    TRIAL_SEED,
    lease_attr,
    set_study_objectives,
    study_objectives,
    trial_fail_reason,
)
from growsearch.search.objectives import Objective
from growsearch.search.storage import open_storage
from growsearch.search.study import StudyConfig
from growsearch.vocabulary import COST_OBJECTIVES, DIRECTIONS, EER, OBJECTIVES, Direction
from growsearch.yamlio import parse_model

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

#: The attribute names in the database: the file format. Changing one breaks every
#: existing study, so this table is spelled out rather than derived.
DB_KEYS = {
    "TRIAL_SCHEDULE": "schedule", "TRIAL_REFERENCE": "reference", "TRIAL_CURVES": "curves", "TRIAL_METRICS": "metrics",
    "TRIAL_SEED": "seed", "TRIAL_FAIL_REASON": "fail_reason", "TRIAL_DRIVER": "driver", "TRIAL_DUPLICATE_OF": "duplicate_of",
    "TRIAL_RAY_TRIAL_ID": "ray_trial_id", "TRIAL_NODE": "node", "TRIAL_ATTEMPT": "attempt", "TRIAL_CONSTRAINT": "constraint",
    "TRIAL_REQUEUED_FROM": "requeued_from", "TRIAL_RUNGS": "rungs", "TRIAL_PRUNED": "pruned", "TRIAL_LINEAGE": "lineage",
    "TRIAL_PROMOTED_FROM": "promoted_from", "VERSIONS": "versions",
    "STUDY_CONFIG": "config", "STUDY_CONFIG_HASH": "config_hash", "STUDY_OBJECTIVES": "objectives",
    "STUDY_TRAIN_CONFIG_HASH": "train_config_hash", "STUDY_FLOPS_DEFINITION": "flops_definition",
    "STUDY_PREFIX_REUSE": "prefix_reuse", "STUDY_LEGACY_LEASE": "driver",
}

#: A value of each JSON kind an attribute may hold.
SAMPLES: dict[type, Any] = {
    dict: {"version": 1, "events": [{"point": "stage2", "epoch": 2, "neurons": 64}], "x": [0.25, 3]},
    list: [1.5, -2.0],
    str: "paper-dropin",
    int: 7,
}


def _storage(tmp_path: Path) -> Any:
    return open_storage(f"sqlite:///{tmp_path / 'attrs.db'}", heartbeat=False)


def test_database_keys_are_the_file_format() -> None:
    have = {name: getattr(attrs, name).key for name in DB_KEYS}
    assert have == DB_KEYS
    assert set(TRIAL_ATTRS) | set(STUDY_ATTRS) == {getattr(attrs, n) for n in DB_KEYS}
    for level in (TRIAL_ATTRS, STUDY_ATTRS):  # one meaning per key and level
        assert len({a.key for a in level}) == len(level)
    assert (LEASE_PREFIX, OPTUNA_FAIL_REASON, OPTUNA_CONSTRAINTS, OPTUNA_FIXED_PARAMS) == (
        "driver:", "fail_reason", "constraints", "fixed_params")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite study where trial ``i`` carries only ``TRIAL_ATTRS[i]`` (set through its
    helper, on an ``optuna.Trial``) and the study every study attr; returns the URL."""
    url = f"sqlite:///{tmp_path_factory.mktemp('attrs') / 'attrs.db'}"
    study = optuna.create_study(study_name="rt", storage=open_storage(url, heartbeat=False))
    for attr in TRIAL_ATTRS:
        trial = study.ask()
        assert attr.get(trial) is None  # absent
        attr.set(trial, SAMPLES[attr.kind])
        study.tell(trial, 0.5)
    for attr in STUDY_ATTRS:
        assert attr.get(study) is None
        attr.set(study, SAMPLES[attr.kind])
    return url


def _reload(url: str) -> optuna.Study:
    """The study read back from the file through a fresh storage."""
    return optuna.load_study(study_name="rt", storage=open_storage(url, heartbeat=False))


@pytest.mark.parametrize("i", range(len(TRIAL_ATTRS)), ids=[a.key for a in TRIAL_ATTRS])
def test_trial_attr_round_trips(written: str, i: int) -> None:
    attr = TRIAL_ATTRS[i]
    ft = _reload(written).trials[i]
    assert attr.get(ft) == SAMPLES[attr.kind]
    assert attr.get(ft.user_attrs) == SAMPLES[attr.kind]  # a plain attr dict reads the same
    assert ft.user_attrs == {attr.key: SAMPLES[attr.kind]}  # stored under its key, nothing else


def test_study_attrs_round_trip(written: str) -> None:
    study = _reload(written)
    assert {a.key: a.get(study) for a in STUDY_ATTRS} == {a.key: SAMPLES[a.kind] for a in STUDY_ATTRS}
    assert study.user_attrs == {a.key: SAMPLES[a.kind] for a in STUDY_ATTRS}


def test_get_refuses_another_kind() -> None:
    assert TRIAL_SCHEDULE.get({"schedule": "not a dict"}) is None
    assert TRIAL_SEED.get({"seed": "42"}) is None and TRIAL_SEED.get({"seed": 42}) == 42
    assert STUDY_CONFIG_HASH.get({}) is None


def test_lease_round_trips(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="rt", storage=_storage(tmp_path))
    lease = {"host": "h", "pid": 1, "token": "abc123", "beat": 1.0}
    lease_attr("abc123").set(study, lease)
    again = optuna.load_study(study_name="rt", storage=_storage(tmp_path))
    assert again.user_attrs == {"driver:abc123": lease}
    assert lease_attr("abc123").get(again) == lease and lease_attr("other").get(again) is None


def test_objectives_round_trip_and_name_the_report(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="rt", storage=_storage(tmp_path), directions=["minimize", "maximize"])
    objs = [Objective(name=EER), Objective(name="params", direction="maximize")]
    set_study_objectives(study, objs)
    again = optuna.load_study(study_name="rt", storage=_storage(tmp_path))
    assert again.user_attrs["objectives"] == [{"name": EER, "direction": "minimize"}, {"name": "params", "direction": "maximize"}]
    assert study_objectives(again) == objs
    assert objectives_of(again) == objs  # no metric names: the report names them from the attr
    assert study_objectives({"objectives": [{"name": "x", "direction": "sideways"}]}) is None
    assert study_objectives({"objectives": "dev_eer"}) is None


def test_fail_reason_user_attr_then_optuna_system_attr(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="rt", storage=_storage(tmp_path))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={TRIAL_FAIL_REASON.key: "nan"},
                                 system_attrs={OPTUNA_FAIL_REASON: "older"}))
    study.add_trial(create_trial(state=TrialState.FAIL, system_attrs={OPTUNA_FAIL_REASON: "Traceback: boom"}))
    study.add_trial(create_trial(state=TrialState.FAIL))
    again = optuna.load_study(study_name="rt", storage=_storage(tmp_path))
    assert [trial_fail_reason(t) for t in again.trials] == ["nan", "Traceback: boom", None]


def test_optuna_system_keys_are_optunas(tmp_path: Path) -> None:
    """The system attrs growsearch reads by key are the ones Optuna itself writes and reads."""
    study = optuna.create_study(study_name="rt", storage=_storage(tmp_path))
    study.enqueue_trial({"x": 0.5})
    assert study.get_trials(deepcopy=False)[0].system_attrs[OPTUNA_FIXED_PARAMS] == {"x": 0.5}
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_constraint("max_params", 2.0)
    study.tell(trial, 0.5)
    ft = optuna.load_study(study_name="rt", storage=_storage(tmp_path)).trials[0]
    assert OPTUNA_CONSTRAINT_PREFIX + "max_params" in ft.system_attrs and ft.constraints == {"max_params": 2.0}
    made = create_trial(value=1.0, params={"x": 0.1}, distributions={"x": FloatDistribution(0.0, 1.0)},
                        system_attrs={OPTUNA_CONSTRAINTS: [-1.0, 3.0]})
    assert list(made.constraints.values()) == [-1.0, 3.0]


# ---- objectives ---------------------------------------------------------------------------
def test_objective_vocabulary() -> None:
    assert OBJECTIVES == (EER, *COST_OBJECTIVES)
    assert DIRECTIONS == ("minimize", "maximize")


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_objective_is_accepted(name: str, direction: Direction) -> None:
    o = Objective(name=name, direction=direction)
    assert o.sign == (1.0 if direction == "minimize" else -1.0)
    assert Objective(name=name).direction == "minimize"


def test_unknown_objective_is_refused_naming_the_vocabulary() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_model(StudyConfig, {"objectives": ["dev_eer", "acc"]}, "s.yaml")
    known = ", ".join(repr(o) for o in OBJECTIVES[:-1]) + f" or {OBJECTIVES[-1]!r}"
    assert f"s.yaml: objectives[1].name: Input should be {known} (got 'acc')" in str(ei.value)
