"""Every use of Optuna's private surface, in one place.

growsearch relies on a few things Optuna does not promise to keep (checked for Optuna 5.0):

* **Attributes**: a study's storage and id (``Study._storage``, ``Study._study_id``), a
  trial's storage id (``Trial._trial_id``, ``FrozenTrial._trial_id``), the parameters an
  enqueued trial was fixed to (``Trial._fixed_params``), and the RDB storage under Optuna's
  cache (``_CachedStorage._backend``).
* **Modules**: the RDB table models (``optuna.storages._rdb.models``), read by the
  hand-written SQL here (:func:`heartbeat_ages`, :func:`fail_trial`) and by
  :mod:`growsearch.report.fastread` (through :func:`trial_tables`); the heartbeat base
  class (``optuna.storages._heartbeat.BaseHeartbeat``); the lazily seeded random state of
  the samplers (``optuna.samplers._lazy_random_state.LazyRandomState``).
* **The trial list samplers read**: ``Study._get_trials`` (what :class:`TrialsView` filters
  so that a sampler does not see reference trials, see :mod:`growsearch.search.sampling`).

Nothing else in growsearch touches these names. :func:`surface_problems` lists what of
this surface an installed Optuna lacks (tables, columns, attributes), one line each;
``tests/test_optuna_private.py`` runs it on a real SQLite study, so an Optuna upgrade that
renames any of it fails there with the name, not somewhere deep in a search.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages._rdb import models
from optuna.trial import TrialState

__all__ = [
    "EXPECTED_COLUMNS", "LazyRandomState", "TrialsView", "fail_trial", "fixed_params_of", "heartbeat_ages", "heartbeat_storage",
    "rdb_of", "storage_of", "study_id_of", "surface_problems", "trial_id_of", "trial_tables",
]

#: The RDB tables (model class -> table name, columns) the SQL of growsearch reads or writes.
EXPECTED_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "TrialModel": ("trials", ("trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete")),
    "TrialValueModel": ("trial_values", ("trial_id", "objective", "value", "value_type")),
    "TrialUserAttributeModel": ("trial_user_attributes", ("trial_id", "key", "value_json")),
    "TrialSystemAttributeModel": ("trial_system_attributes", ("trial_id", "key", "value_json")),
    "TrialHeartbeatModel": ("trial_heartbeats", ("trial_id", "heartbeat")),
}


# ---- the study as a sampler sees it ------------------------------------------------------------
class TrialsView:
    """``study`` with the trials ``hide`` selects turned into FAIL trials, as Optuna's samplers read it.

    A hidden trial stays in the list, at its position, as a copy in state FAIL without
    values: samplers skip FAIL trials (no search space, no observation, no population), and
    Optuna's genetic samplers index the full trial list by trial number
    (``optuna.samplers._ga._base``), which a shorter list breaks (an ``IndexError``, or worse,
    the wrong trial). Samplers list trials through ``Study._get_trials`` (and a few through
    ``get_trials``); both go through here, every other attribute is the study's own.
    """

    def __init__(self, study: optuna.Study, hide: Any) -> None:
        self._gs_study = study
        self._gs_hide = hide

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gs_study, name)

    def _masked(self, trials: list[optuna.trial.FrozenTrial], states: Any) -> list[optuna.trial.FrozenTrial]:
        out = []
        for t in trials:
            if self._gs_hide(t):
                t = copy.copy(t)
                t.state, t.values = TrialState.FAIL, None
            if states is None or t.state in states:
                out.append(t)
        return out

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[optuna.trial.FrozenTrial]:
        return self._masked(self._gs_study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache), states)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        return self._masked(self._gs_study.get_trials(deepcopy=deepcopy, states=None), states)

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials()


# ---- attributes ------------------------------------------------------------------------------
def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through (Optuna's cache around the RDB one)."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its storage."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (not its number)."""
    return trial._trial_id


def fixed_params_of(trial: optuna.Trial) -> dict[str, Any] | None:
    """The parameters an enqueued trial was fixed to, or ``None`` for a sampled one."""
    return trial._fixed_params or None


def rdb_of(storage_or_study: BaseStorage | optuna.Study) -> RDBStorage | None:
    """The RDB storage under a study or a storage (Optuna wraps it in a cache), or ``None``."""
    st: Any = storage_or_study
    if isinstance(st, optuna.Study):
        st = storage_of(st)
    st = getattr(st, "_backend", st)
    return st if isinstance(st, RDBStorage) else None


def heartbeat_storage(storage: BaseStorage) -> BaseHeartbeat | None:
    """``storage`` if it records trial heartbeats (a heartbeat interval is set), else ``None``."""
    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval():
        return storage
    return None


# ---- the RDB tables --------------------------------------------------------------------------
def trial_tables() -> tuple[sa.Table, sa.Table, sa.Table, sa.Table]:
    """Optuna's trial tables: trials, trial values, trial user attrs, trial system attrs."""
    return (models.TrialModel.__table__, models.TrialValueModel.__table__,
            models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__)


def heartbeat_ages(rdb: RDBStorage, trial_ids: list[int]) -> dict[int, float]:
    """Seconds since each trial's last Optuna heartbeat (database clock); absent: none."""
    if not trial_ids:
        return {}
    hb = models.TrialHeartbeatModel
    with rdb.engine.connect() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar()
        rows = conn.execute(sa.select(hb.trial_id, hb.heartbeat).where(hb.trial_id.in_(trial_ids))).all()
    if now is None:
        return {}
    if isinstance(now, str):  # some SQLite builds hand CURRENT_TIMESTAMP back as text
        now = datetime.fromisoformat(now)
    now = now.replace(tzinfo=None)
    return {int(tid): (now - beat.replace(tzinfo=None)).total_seconds() for tid, beat in rows if beat is not None}


def fail_trial(rdb: RDBStorage, trial_id: int, reason_key: str, reason: str) -> bool:
    """Mark a RUNNING or WAITING trial FAIL and set its user attr ``reason_key`` = ``reason``.

    One transaction whose ``UPDATE ... WHERE state IN (RUNNING, WAITING)`` is a
    compare-and-swap: of two processes failing the same trial exactly one gets True (the
    read-then-write of Optuna's ``set_trial_state_values`` is not atomic on SQLite).
    """
    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    with rdb.engine.begin() as conn:
        res = conn.execute(
            sa.update(trial)
            .where(trial.trial_id == trial_id, trial.state.in_([TrialState.RUNNING, TrialState.WAITING]))
            .values(state=TrialState.FAIL, datetime_complete=datetime.now())
        )
        if res.rowcount != 1:
            return False
        conn.execute(sa.delete(attr).where(attr.trial_id == trial_id, attr.key == reason_key))
        conn.execute(sa.insert(attr).values(trial_id=trial_id, key=reason_key, value_json=json.dumps(reason)))
    return True


# ---- the check ---------------------------------------------------------------------------------
def surface_problems(study: optuna.Study) -> list[str]:
    """What of the private surface above the installed Optuna lacks, one line each.

    ``study`` must be a study on a heartbeat-enabled RDB storage with one trial asked
    (``study.ask()``) from an enqueued one; an empty list means all is as growsearch expects.
    """
    ver = f"optuna {optuna.__version__}"
    out: list[str] = []
    for cls, (table, cols) in EXPECTED_COLUMNS.items():
        model = getattr(models, cls, None)
        if model is None:
            out.append(f"{ver}: optuna.storages._rdb.models.{cls} is gone (growsearch's SQL reads table {table!r})")
            continue
        if model.__tablename__ != table:
            out.append(f"{ver}: {cls} maps table {model.__tablename__!r}, growsearch expects {table!r}")
        have = {c.name for c in model.__table__.c}
        for col in cols:
            if col not in have:
                out.append(f"{ver}: table {table!r} has no column {col!r} (has {', '.join(sorted(have))})")
    for state in ("RUNNING", "WAITING", "FAIL"):
        if state not in TrialState.__members__:
            out.append(f"{ver}: TrialState.{state} is gone")
    for name, obj in (("Study._storage", study), ("Study._study_id", study)):
        attr = name.split(".")[1]
        if not hasattr(obj, attr):
            out.append(f"{ver}: {name} is gone")
    storage = getattr(study, "_storage", None)
    if storage is not None and not hasattr(storage, "_backend") and not isinstance(storage, RDBStorage):
        out.append(f"{ver}: the storage wrapper {type(storage).__name__} has no _backend (the RDB storage under the cache)")
    if storage is not None and rdb_of(storage) is None:
        out.append(f"{ver}: no RDBStorage found under {type(storage).__name__}")
    rdb = rdb_of(storage) if storage is not None else None
    if rdb is not None:
        if not isinstance(rdb, BaseHeartbeat):
            out.append(f"{ver}: RDBStorage is no longer an optuna.storages._heartbeat.BaseHeartbeat")
        for meth in ("record_heartbeat", "get_heartbeat_interval"):
            if not callable(getattr(rdb, meth, None)):
                out.append(f"{ver}: RDBStorage.{meth} is gone")
        if not hasattr(rdb, "engine"):
            out.append(f"{ver}: RDBStorage.engine is gone (growsearch's SQL runs on it)")
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        out.append("surface_problems needs a study with one RUNNING trial asked from an enqueued one")
    else:
        if not hasattr(running[0], "_trial_id"):
            out.append(f"{ver}: FrozenTrial._trial_id is gone")
        trial = optuna.Trial(study, running[0]._trial_id) if hasattr(running[0], "_trial_id") else None
        for attr in ("_trial_id", "_fixed_params"):
            if trial is not None and not hasattr(trial, attr):
                out.append(f"{ver}: Trial.{attr} is gone")
    if not hasattr(LazyRandomState(0), "rng"):
        out.append(f"{ver}: LazyRandomState.rng is gone (the samplers' random state, reseeded per trial)")
    return out
