"""Reading a large study fast: states and objective values in one query, full trials only
for the few that a report shows.

``study.get_trials()`` builds a ``FrozenTrial`` (params, user and system attrs, intermediate
values) through the SQLAlchemy ORM for every trial: ~4.5 s of CPU for 10,000 trials here.
A report needs full trials only for the Pareto members and the reference trials; for the
rest, number, state and values are enough. :func:`read_rows` selects exactly those from
Optuna's own tables (read-only; the table objects come from
:func:`growsearch.search.optuna_private.trial_tables`, so a schema change breaks loudly here
and in ``tests/test_optuna_private.py``, and :func:`growsearch.report.front.load_study_data`
then falls back to ``study.get_trials``). Full trials are then fetched one by one with the
public ``storage.get_trial(trial_id)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage

from growsearch.search import optuna_private
from growsearch.search.attrs import OPTUNA_CONSTRAINT_PREFIX, OPTUNA_CONSTRAINTS


@dataclass
class Rows:
    """Every trial of one study, without attributes.

    Attributes:
        trial_ids: storage trial ids ``(n,)``.
        numbers: trial numbers ``(n,)``.
        states: state names (``COMPLETE``, ``FAIL``...), length n.
        values: objective values ``(n, m)``; NaN where missing, +-inf for infinite values.
        user_attr: ``key -> {trial_id: value}`` for the keys asked for.
        system_attr: the same for trial system attrs.
        constraints: ``trial_id -> constraint values`` for trials that have any (Optuna's
            ``constraints`` list or ``constraints:<key>`` system attrs).
    """

    trial_ids: np.ndarray
    numbers: np.ndarray
    states: list[str]
    values: np.ndarray
    user_attr: dict[str, dict[int, Any]]
    system_attr: dict[str, dict[int, Any]]
    constraints: dict[int, list[float]]


def rdb_of(study: optuna.Study) -> RDBStorage | None:
    """The RDB storage behind ``study`` (Optuna wraps it in a cache), or ``None``."""
    return optuna_private.rdb_of(study)



def _attr_values(c: Any, table: Any, T: Any, study_id: int, keys: tuple[str, ...]) -> dict[str, dict[int, Any]]:
    """``{key: {trial_id: value}}`` of the attribute ``table`` (user or system) for ``keys``."""
    out: dict[str, dict[int, Any]] = {k: {} for k in keys}
    if keys:
        for tid, key, vj in c.execute(
            sa.select(table.c.trial_id, table.c.key, table.c.value_json)
            .join(T, T.c.trial_id == table.c.trial_id)
            .where(T.c.study_id == study_id, table.c.key.in_(keys))
        ):
            out[key][tid] = json.loads(vj)
    return out

def read_rows(rdb: RDBStorage, study_id: int, n_objectives: int, *, user_keys: tuple[str, ...] = (), system_keys: tuple[str, ...] = ()) -> Rows:
    """Numbers, states, values (and a few attribute keys) of every trial: 2-4 queries.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database does not have Optuna's schema.
    """
    T, V, UA, SA = optuna_private.trial_tables()
    with rdb.engine.connect() as c:
        trials = c.execute(sa.select(T.c.trial_id, T.c.number, T.c.state).where(T.c.study_id == study_id).order_by(T.c.number)).all()
        vals = c.execute(
            sa.select(V.c.trial_id, V.c.objective, V.c.value, V.c.value_type).join(T, T.c.trial_id == V.c.trial_id).where(T.c.study_id == study_id)
        ).all()
        ua = _attr_values(c, UA, T, study_id, user_keys)
        sy = _attr_values(c, SA, T, study_id, system_keys)
        cons: dict[int, list[float]] = {}
        for tid, _key, vj in c.execute(
            sa.select(SA.c.trial_id, SA.c.key, SA.c.value_json).join(T, T.c.trial_id == SA.c.trial_id).where(
                T.c.study_id == study_id, sa.or_(SA.c.key == OPTUNA_CONSTRAINTS, SA.c.key.like(OPTUNA_CONSTRAINT_PREFIX + "%"))
            )
        ):
            v = json.loads(vj)
            cons.setdefault(int(tid), []).extend(float(x) for x in (v if isinstance(v, list) else [v]))
    ids = np.asarray([r[0] for r in trials], dtype=np.int64)
    pos = {int(t): i for i, t in enumerate(ids)}
    values = np.full((len(trials), n_objectives), np.nan)
    for tid, obj, value, vtype in vals:
        i = pos.get(int(tid))
        if i is None or not 0 <= obj < n_objectives:
            continue
        vt = getattr(vtype, "name", str(vtype))
        values[i, obj] = value if vt == "FINITE" else (np.inf if vt == "INF_POS" else -np.inf)
    states = [getattr(r[2], "name", str(r[2])) for r in trials]
    return Rows(ids, np.asarray([r[1] for r in trials], dtype=np.int64), states, values, ua, sy, cons)
