"""``growsearch dashboard``: a real subprocess serving optuna-dashboard, queried over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest

from growsearch.report.dashboard import FIGURE_ID
from growsearch.search.storage import open_storage

from synthetic_study import build_demo_study, create_study, make_trial

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
        _stop(proc)
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


def _request(url: str, method: str) -> int:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=90) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("read_only", [False, True])
def test_dashboard_beyond_loopback_warns_and_read_only_refuses_delete(tmp_path: Path, read_only: bool) -> None:
    """``--host 0.0.0.0`` exposed the unauthenticated write API silently (a DELETE of a study
    worked): now a loud warning, and ``--read-only`` refuses the DELETE."""
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    st = open_storage(url, heartbeat=False)
    build_demo_study(st, "keep", 4, seed=1)
    argv = [sys.executable, "-m", "growsearch", "dashboard", "keep", "--storage", url, "--port", "0", "--host", "0.0.0.0"]
    proc = subprocess.Popen(argv + (["--read-only"] if read_only else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://0.0.0.0:"), (line, proc.stderr.read() if proc.poll() is not None else "")
        base = "http://127.0.0.1:" + line.split(":")[2].split("/")[0]
        sid = {s["study_name"]: s["study_id"] for s in _get(base + "/api/studies")["study_summaries"]}["keep"]
        status = _request(f"{base}/api/studies/{sid}", "DELETE")
    finally:
        _stop(proc)
    err = proc.stderr.read()
    assert "WARNING" in err and "0.0.0.0" in err and "unauthenticated" in err.replace("no authentication", "unauthenticated")
    names = optuna.get_all_study_names(open_storage(url, heartbeat=False))
    if read_only:
        assert status == 403 and names == ["keep"]
        assert "--read-only refuses writes" in err
    else:
        assert status < 300 and names == []  # what the warning is about
        assert "--read-only" in err


def test_loopback_dashboard_does_not_warn() -> None:
    from growsearch.report.dashboard import exposure_warning, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("myhost")
    assert exposure_warning("127.0.0.1", 8080, False) is None


def test_dashboard_is_part_of_the_default_install() -> None:
    """The README runs `growsearch dashboard` right after `pip install -e .` (no extras)."""
    import tomllib

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.replace(" ", "").startswith("optuna-dashboard") for d in deps), deps


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C the dashboard, as a user would; kill it if it does not stop within 20 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
