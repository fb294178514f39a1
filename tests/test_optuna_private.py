"""Optuna's private names that growsearch relies on still exist (growsearch.search.optuna_private).

Run on a real SQLite study: an Optuna upgrade that renames a table, a column or an attribute
fails here with a message naming it, not deep inside a search or a report.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from growsearch.search import optuna_private as op
from growsearch.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    st = open_storage(f"sqlite:///{tmp_path}/study.db")  # heartbeats on, as a driver opens it
    s = optuna.create_study(study_name="s", storage=st, directions=["minimize", "minimize"])
    s.enqueue_trial({"x": 1.0})
    with pytest.warns(UserWarning, match="Heartbeat"):
        s.ask()
    return s


def test_optuna_private_surface_is_as_expected(study: optuna.Study) -> None:
    problems = op.surface_problems(study)
    assert not problems, ("Optuna's private surface changed; growsearch/search/optuna_private.py needs updating:\n  "
                          + "\n  ".join(problems))


def test_a_renamed_name_is_named(study: optuna.Study, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(op.EXPECTED_COLUMNS, "TrialModel", ("trials", ("trial_id", "trial_state")))
    monkeypatch.delattr(op.models, "TrialHeartbeatModel")
    problems = op.surface_problems(study)
    assert any("'trials' has no column 'trial_state'" in p for p in problems), problems
    assert any("TrialHeartbeatModel is gone" in p for p in problems), problems
    assert all(p.startswith(f"optuna {optuna.__version__}: ") for p in problems)


def test_the_helpers_read_a_real_study(study: optuna.Study) -> None:
    (ft,) = study.get_trials(states=(TrialState.RUNNING,))
    trial = optuna.Trial(study, op.trial_id_of(ft))
    assert op.fixed_params_of(trial) == {"x": 1.0}
    rdb = op.rdb_of(study)
    assert rdb is not None and op.rdb_of(op.storage_of(study)) is rdb
    assert op.heartbeat_storage(op.storage_of(study)) is not None
    op.heartbeat_storage(op.storage_of(study)).record_heartbeat(op.trial_id_of(ft))
    ages = op.heartbeat_ages(rdb, [op.trial_id_of(ft)])
    assert set(ages) == {op.trial_id_of(ft)} and -5 < ages[op.trial_id_of(ft)] < 60
    # the compare-and-swap FAIL lands once
    assert op.fail_trial(rdb, op.trial_id_of(ft), "fail_reason", "first") is True
    assert op.fail_trial(rdb, op.trial_id_of(ft), "fail_reason", "second") is False
    got = study.get_trials()[0]
    assert got.state == TrialState.FAIL and got.user_attrs["fail_reason"] == "first"
    T, V, UA, SA = op.trial_tables()
    assert (T.name, V.name, UA.name, SA.name) == ("trials", "trial_values", "trial_user_attributes", "trial_system_attributes")
