"""``growsearch dashboard``: a real subprocess serving optuna-dashboard, queried over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest

from growsearch.report.dashboard import FIGURE_ID
from growsearch.report.synthetic import build_demo_study, create_study, make_trial
from growsearch.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
pytest.importorskip("optuna_dashboard")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=90) as r:
        return json.loads(r.read().decode())


def _snapshot(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.values, t.user_attrs, t.datetime_complete) for t in study.get_trials()]


def test_dashboard_serves_study_with_names_and_figure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    st = open_storage(url, heartbeat=False)
    study = build_demo_study(st, "dash", 12, seed=3, n_failed=1)
    optuna.create_study(study_name="other", storage=st)
    before = _snapshot(study)

    proc = subprocess.Popen(
        [sys.executable, "-m", "growsearch", "dashboard", "dash", "--storage", url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline().strip()  # the URL, printed once the socket listens
        assert line.startswith("http://127.0.0.1:") and line.endswith("/dashboard/"), (line, proc.stderr.read() if proc.poll() is not None else "")
        base = line[: -len("/dashboard/")]
        studies = _get(base + "/api/studies")["study_summaries"]
        ids = {s["study_name"]: s["study_id"] for s in studies}
        assert set(ids) == {"dash", "other"}
        d = _get(f"{base}/api/studies/{ids['dash']}?after=0")
        assert d["objective_names"] == ["dev_eer", "params", "flops"]
        assert len(d["trials"]) == 2 + 12 + 1
        assert {t["number"] for t in d["best_trials"]} == {t.number for t in study.best_trials}
        figs = {g["id"]: g for g in d["plotly_graph_objects"]}
        assert FIGURE_ID in figs and json.loads(figs[FIGURE_ID]["graph_object"])["layout"]["xaxis"]["title"]["text"] == "params"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert _snapshot(optuna.load_study(study_name="dash", storage=st)) == before  # trials untouched



def test_prepare_study_names_from_objectives_attr() -> None:
    from growsearch.report.dashboard import prepare_study
    from growsearch.report.front import load_study_data

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr("objectives", [{"name": "dev_eer", "direction": "minimize"}, {"name": "params", "direction": "minimize"}])
    study.add_trial(make_trial((0.2, 10.0)))
    assert prepare_study(study, load_study_data(study), attach_figure=False) == ["metric names"]
    assert study.metric_names == ["dev_eer", "params"]
    assert not any(k.startswith("dashboard:plot_data") for k in study._storage.get_study_system_attrs(study._study_id))
    assert prepare_study(study, load_study_data(study)) == ["Pareto figure"]  # names kept, figure attached
    assert any(k.startswith(f"dashboard:plot_data:{FIGURE_ID}:") for k in study._storage.get_study_system_attrs(study._study_id))
    n = len(study._storage.get_study_system_attrs(study._study_id))
    prepare_study(study, load_study_data(study))
    assert len(study._storage.get_study_system_attrs(study._study_id)) == n  # the same id is overwritten, not piled up


def test_dashboard_port_in_use(tmp_path: Path) -> None:
    import socket

    url = f"sqlite:///{tmp_path / 'p.db'}"
    create_study(open_storage(url, heartbeat=False), "p")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "growsearch", "dashboard", "p", "--storage", url, "--port", str(port)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
