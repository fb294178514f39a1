"""Pareto front, hypervolume, timelines, export picks and the pareto/export/show/list CLI,
on small hand-made Optuna studies in real SQLite files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from click.testing import CliRunner

from growsearch.cli import cli
from growsearch.errors import ConfigError
from growsearch.report.export import export_document, knee_point, parse_pick, pick_members, write_export
from growsearch.report.front import Objective, load_study_data, pareto_mask
from growsearch.report.hypervolume import hv_space, hypervolume, hypervolume_history
from growsearch.report.timeline import Mark, Segment, run_epochs, schedule_timeline
from growsearch.schedule import load_schedules
from growsearch.search.attrs import STUDY_CONFIG_HASH, TRIAL_DUPLICATE_OF
from growsearch.search.storage import open_storage

from synthetic_study import build_demo_study, create_study, make_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

MIN2 = [Objective.recorded("dev_eer", "minimize"), Objective.recorded("params", "minimize")]
SCHED_A = {"version": 1, "events": [{"point": "stage2", "epoch": 2, "neurons": 64}]}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, optuna.Study]:
    """Five trials on (dev_eer, params): front = D, A, B, E; C dominated by B; one FAIL.
    Read-only for the tests (module scope: one SQLite file)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('small') / 'small.db'}"
    study = create_study(open_storage(url, heartbeat=False), "small", ("dev_eer", "params"))
    study.add_trials([
        make_trial((0.1, 300.0), schedule=SCHED_A, curves={"dev_eer": [0.4, 0.3, 0.2, 0.1]}),  # 0 A
        make_trial((0.2, 100.0)),  # 1 B
        make_trial((0.3, 200.0)),  # 2 C (dominated by B)
        make_trial((0.05, 500.0), reference="paper-dropin", schedule=SCHED_A),  # 3 D
        make_trial((0.4, 50.0), reference="baseline"),  # 4 E
        make_trial(None, state=optuna.trial.TrialState.FAIL, fail_reason="NaN loss at epoch 3\ntraceback..."),  # 5
    ])
    return url, study


# ---- front ------------------------------------------------------------------------------
def test_front_matches_best_trials(small: tuple[str, optuna.Study]) -> None:
    _, study = small
    data = load_study_data(study)
    assert [p.number for p in data.front] == [3, 0, 1, 4]  # sorted by EER
    assert {p.number for p in data.front} == {t.number for t in study.best_trials}
    assert data.counts["COMPLETE"] == 5 and data.counts["FAIL"] == 1
    assert data.failed == [(5, "NaN loss at epoch 3")]
    assert {p.reference for p in data.references} == {"paper-dropin", "baseline"}
    assert data.names == ["dev_eer", "params"]


@pytest.mark.parametrize("n_obj", [2, 3])
def test_front_equals_optuna_on_random_study(tmp_path: Path, n_obj: int) -> None:
    study = build_demo_study(None, "d", 60, seed=n_obj)  # in memory
    if n_obj == 2:  # same trials, two objectives
        s2 = optuna.create_study(directions=["minimize", "maximize"])
        for p in load_study_data(study).points:
            s2.add_trial(make_trial(p.values[:2]))
        study = s2
    data = load_study_data(study)
    assert {p.number for p in data.front} == {t.number for t in study.best_trials}


def test_pareto_mask_maximize_and_duplicates() -> None:
    objs = [Objective.recorded("acc", "maximize"), Objective.recorded("params", "minimize")]
    v = np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 6.0], [0.9, 10.0]])
    assert pareto_mask(v, objs).tolist() == [True, True, False, True]


def test_objective_names_fall_back_to_user_attr() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr("objectives", [{"name": "dev_eer", "direction": "minimize"}, {"name": "flops", "direction": "minimize"}])
    assert load_study_data(study).names == ["dev_eer", "flops"]
    assert load_study_data(optuna.create_study(directions=["minimize"] * 2)).names == ["objective_0", "objective_1"]


# ---- hypervolume ------------------------------------------------------------------------
def test_hypervolume_2d_by_hand() -> None:
    v = np.array([[0.1, 300.0], [0.2, 100.0], [0.3, 200.0]])
    # explicit reference (1, 1000): z = A(.1,.3), B(.2,.1); HV = .9*.7 + .8*(.3-.1) = .79
    assert hypervolume(v, MIN2, [1.0, 1000.0]) == pytest.approx(0.79)
    # nadir: r = (0.33, 330); z = A(1/3.3, 300/330), B(2/3.3, 100/330)
    r = hv_space(v, MIN2).reference
    np.testing.assert_allclose(r, [0.33, 330.0])
    a, b = (0.1 / 0.33, 300 / 330), (0.2 / 0.33, 100 / 330)
    expected = (1 - a[0]) * (1 - a[1]) + (1 - b[0]) * (a[1] - b[1])
    assert hypervolume(v, MIN2) == pytest.approx(expected)
    # fixed: EER reference 1.0, params as nadir (330)
    a, b = (0.1, 300 / 330), (0.2, 100 / 330)
    assert hypervolume(v, MIN2, "fixed") == pytest.approx((1 - a[0]) * (1 - a[1]) + (1 - b[0]) * (a[1] - b[1]))


def test_hypervolume_3d_by_hand_and_maximize() -> None:
    objs = [Objective.recorded(n, "minimize") for n in ("dev_eer", "params", "flops")]
    v = np.array([[0.5, 0.5, 0.5], [0.25, 0.75, 0.5]])
    # 0.125 + 0.09375 - 0.0625 (overlap box (0.5, 0.75, 0.5) .. 1)
    assert hypervolume(v, objs, [1.0, 1.0, 1.0]) == pytest.approx(0.15625)
    # maximised objective: acc 0.8 -> loss -0.8; lower = -0.8, reference -0.5; z = 0
    mx = [Objective.recorded("acc", "maximize"), Objective.recorded("params", "minimize")]
    assert hypervolume(np.array([[0.8, 1.0]]), mx, [-0.5, 2.0]) == pytest.approx(1.0 * 0.5)


def test_hypervolume_history_is_monotone_and_ends_at_total() -> None:
    rng = np.random.default_rng(0)
    v = rng.random((40, 3))
    objs = [Objective.recorded(n, "minimize") for n in "abc"]
    h = hypervolume_history(v, objs)
    assert np.all(np.diff(h) >= -1e-12)
    assert h[-1] == pytest.approx(hypervolume(v, objs))
    assert h[0] == pytest.approx(hypervolume(v[:1], objs, space=hv_space(v, objs)))


def test_hypervolume_bad_reference() -> None:
    with pytest.raises(ConfigError, match="valid: nadir, fixed"):
        hypervolume(np.ones((1, 2)), MIN2, "bogus")
    with pytest.raises(ConfigError, match="3 values but the study has 2"):
        hypervolume(np.ones((1, 2)), MIN2, [1, 2, 3])


# ---- timelines --------------------------------------------------------------------------
def test_timeline_grow_then_shrink() -> None:
    tl = schedule_timeline({"events": [
        {"point": "gru2", "epoch": 3, "neurons": 64},
        {"point": "gru2", "epoch": 6, "action": "shrink"},
        {"point": "stage2", "epoch": 1, "neurons": 8},
        {"point": "stage2", "epoch": 4, "neurons": 8},
    ]}, epochs=9)
    assert tl.epochs == 9
    assert tl.segments == (
        Segment("stage2", 1, 4, 8), Segment("gru2", 3, 6, 64), Segment("stage2", 4, 9, 16),
    )
    assert [(m.point, m.epoch, m.delta) for m in tl.marks] == [("stage2", 1, 8), ("gru2", 3, 64), ("stage2", 4, 8), ("gru2", 6, -64)]
    assert isinstance(tl.marks[0], Mark) and tl.points == ["stage2", "gru2"]


def test_timeline_partial_shrink_and_defaults() -> None:
    tl = schedule_timeline({"events": [{"point": "p", "epoch": 0, "neurons": 10}, {"point": "p", "epoch": 2, "action": "shrink", "neurons": 4}]})
    assert tl.epochs == 3 and tl.segments == (Segment("p", 0, 2, 10), Segment("p", 2, 3, 6))
    assert schedule_timeline(None, 5).segments == ()
    assert run_epochs({"dev_eer": [1, 2, 3]}) == 3
    assert run_epochs({}, {"training": {"epochs": 7}}) == 7 and run_epochs(None) is None


# ---- export -----------------------------------------------------------------------------
def test_knee_by_hand() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_metric_names(["dev_eer", "params"])
    study.add_trials([make_trial(v) for v in ((0.0, 100.0), (0.03, 30.0), (0.1, 0.0), (0.09, 90.0))])
    # normalised front: (0, 1), (.3, .3), (1, 0) -> middle is closest to (0, 0)
    assert knee_point(load_study_data(study)).number == 1


def test_picks(small: tuple[str, optuna.Study]) -> None:
    data = load_study_data(small[1])
    assert [p.number for p in pick_members(data, "min-eer")] == [3]
    assert [p.number for p in pick_members(data, "all")] == [3, 0, 1, 4]
    assert [p.number for p in pick_members(data, *parse_pick("max-params:300"))] == [0]
    assert [p.number for p in pick_members(data, "max-params", 120)] == [1]
    with pytest.raises(ConfigError, match="smallest has 50"):
        pick_members(data, "max-params", 10)
    with pytest.raises(ConfigError, match="needs a parameter budget"):
        pick_members(data, "max-params")
    with pytest.raises(ConfigError, match="valid: knee, min-eer, max-params, all"):
        pick_members(data, "best")


def test_export_file_round_trips_and_hides_password(small: tuple[str, optuna.Study], tmp_path: Path) -> None:
    data = load_study_data(small[1])
    doc = export_document(data, pick_members(data, "all"), pick="all", storage="postgresql+psycopg://gs:s3cr3t@db:5432/gs")
    out = write_export(tmp_path / "best.yaml", doc)
    text = out.read_text()
    assert "s3cr3t" not in text and "gs:***@db" in text
    scheds = load_schedules(out)
    assert len(scheds) == 4
    assert scheds[0].to_dict() == {"version": 1, "events": [{**SCHED_A["events"][0], "action": "grow", "form": "inplace", "init": "random",
                                                            "rule": "appended", "freeze": "all", "optimizer_state": "fresh"}]}
    y = yaml.safe_load(text)
    assert y["config_hash"] == STUDY_CONFIG_HASH.get(small[1]) and y["versions"]["optuna"] == optuna.__version__
    assert y["schedules"][0]["trial"] == 3 and y["schedules"][0]["reference"] == "paper-dropin"
    assert y["schedules"][0]["values"] == {"dev_eer": 0.05, "params": 500.0} and y["schedules"][0]["seed"] == 42


# ---- CLI --------------------------------------------------------------------------------
def _run(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_cli_pareto_formats(small: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, _ = small
    recs = json.loads(_run("pareto", "small", "--storage", url, "--json"))
    assert [r["number"] for r in recs] == [3, 0, 1, 4]
    assert recs[0]["values"] == {"dev_eer": 0.05, "params": 500.0} and recs[0]["reference"] == "paper-dropin"
    assert recs[0]["schedule"] == SCHED_A
    csv_lines = _run("pareto", "small", "--storage", url, "--csv").splitlines()
    assert csv_lines[0] == "number,dev_eer,params,reference,schedule" and csv_lines[1].startswith("3,0.05,500.0,paper-dropin,")
    html = tmp_path / "r" / "report.html"
    assert _run("pareto", "small", "--storage", url, "--html", str(html), "--reference-point", "fixed").startswith("trial")
    page = html.read_text()
    assert "plotly-graph-div" in page and "reference fixed" in page and "Growth schedules" in page
    table = _run("pareto", "small", "--storage", url).splitlines()
    assert table[0].split()[:3] == ["trial", "dev_eer", "params"] and len(table) == 5
    assert "+64 stage2@2" in table[1]


def test_cli_show_list_export(small: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, _ = small
    show = json.loads(_run("show", "small", "--storage", url, "--json"))
    assert show["pareto_size"] == 4 and show["states"] == {"COMPLETE": 5, "FAIL": 1}
    assert show["best_eer"] == {"value": 0.05, "trial": 3}
    assert show["failed"] == [{"trial": 5, "reason": "NaN loss at epoch 3"}]
    v = np.array([[0.1, 300], [0.2, 100], [0.3, 200], [0.05, 500], [0.4, 50]], dtype=float)
    assert show["hypervolume"] == pytest.approx(hypervolume(v, MIN2))
    text = _run("show", "small", "--storage", url)
    assert "pareto size: 4" in text and "#5: NaN loss at epoch 3" in text
    rows = json.loads(_run("list", "--storage", url, "--json"))
    assert rows[0]["name"] == "small" and rows[0]["pareto_size"] == 4 and rows[0]["best"]["params"] == {"value": 50.0, "trial": 4}
    out = tmp_path / "knee.yaml"
    _run("export", "small", "--storage", url, "-o", str(out))
    assert len(load_schedules(out)) == 1
    for form in (["--pick", "max-params", "120"], ["--pick", "max-params:120"], ["--pick", "max-params", "--max-params", "120"]):
        _run("export", "small", "--storage", url, "-o", str(out), *form)
        assert yaml.safe_load(out.read_text())["schedules"][0]["trial"] == 1


def test_cli_study_yaml(small: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, _ = small
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
    y = tmp_path / "small.yaml"
    y.write_text(
        "name: small\n"
        "train: {data: {dataset: synthetic}, model: {backbone: lcgrnn, preset: tiny}, training: {epochs: 3}}\n"
        f"space: {space}\nbudget: {{trials: 2}}\nstorage: {url}\n"
    )
    assert json.loads(_run("pareto", str(y), "--json"))[0]["number"] == 3
    y.write_text(y.read_text().replace(f"storage: {url}", f"outputs: {tmp_path / 'out'}"))
    r = CliRunner().invoke(cli, ["show", str(y)])
    assert isinstance(r.exception, ConfigError) and f"{tmp_path / 'out' / 'study.db'} does not exist" in str(r.exception)


def test_cli_unknown_study_exit_2(small: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, _ = small
    env = {**os.environ, "GROWSEARCH_STORAGE": url}
    r = subprocess.run([sys.executable, "-m", "growsearch", "pareto", "nope"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["growsearch: error: no study named 'nope' in this storage; studies: small"]
    r = subprocess.run([sys.executable, "-m", "growsearch", "show", "x", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "missing.db").exists()


def test_fast_read_equals_full_read(tmp_path: Path) -> None:
    """The few-query read used for large studies gives the same data as study.get_trials."""
    study = build_demo_study(f"sqlite:///{tmp_path / 'f.db'}", "f", 40, seed=5, n_failed=3)
    study.add_trials([make_trial((float("inf"), 1.0, 1.0)), make_trial(None, state=optuna.trial.TrialState.RUNNING)])
    fast, full = load_study_data(study), load_study_data(study, full=True)
    assert fast.counts == full.counts and fast.counts["RUNNING"] == 1 and fast.failed == full.failed
    assert [p.values for p in fast.points] == [p.values for p in full.points]  # inf trial left out of both
    assert fast.front == full.front and fast.on_front.tolist() == full.on_front.tolist()
    finite_best = {t.number for t in study.best_trials if all(np.isfinite(t.values))}
    assert {p.number for p in fast.front} == finite_best and 45 not in finite_best
    assert [p.number for p in fast.references] == [0, 1] and all(p.attrs_loaded for p in fast.references)
    assert not all(p.attrs_loaded for p in fast.points)


@pytest.mark.parametrize("full", [False, True])
def test_constrained_front_is_feasible_front(tmp_path: Path, full: bool) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = create_study(open_storage(url, heartbeat=False), "c", ("dev_eer", "params"))
    study.add_trials([
        make_trial((0.01, 1.0), constraints=[0.5]),  # would dominate everything, infeasible
        make_trial((0.1, 300.0), constraints=[0.0]),
        make_trial((0.2, 100.0), constraints=[-1.0]),
        make_trial((0.3, 200.0), constraints=[-1.0]),
    ])
    data = load_study_data(study, full=full)
    assert [p.number for p in data.front] == [1, 2] == sorted(t.number for t in study.best_trials)
    assert [p.feasible for p in data.points] == [False, True, True, True]


def _postgres_url() -> str | None:
    return os.environ.get("GROWSEARCH_TEST_POSTGRES_URL") or None


@pytest.mark.slow
@pytest.mark.skipif(_postgres_url() is None, reason="set GROWSEARCH_TEST_POSTGRES_URL (e.g. $(bash .ci/postgres.sh)) to test on PostgreSQL")
def test_postgres_fast_read_and_cli_hide_password(tmp_path: Path) -> None:
    import uuid

    url = _postgres_url()
    assert url is not None
    name = f"report-{uuid.uuid4().hex[:8]}"
    study = build_demo_study(open_storage(url, heartbeat=False), name, 25, seed=9, n_failed=2)
    fast, full = load_study_data(study), load_study_data(study, full=True)
    assert fast.front == full.front and fast.failed == full.failed and fast.counts == full.counts
    password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    out = tmp_path / "best.yaml"
    r = subprocess.run([sys.executable, "-m", "growsearch", "export", name, "--storage", url, "-o", str(out), "--pick", "all"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r2 = subprocess.run([sys.executable, "-m", "growsearch", "show", name, "--storage", url], capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert len(load_schedules(out)) == len(fast.front)
    if password:
        for text in (out.read_text(), r.stdout, r.stderr, r2.stdout, r2.stderr):
            assert password not in text
    optuna.delete_study(study_name=name, storage=open_storage(url, heartbeat=False))


@pytest.mark.parametrize("full", [False, True])
def test_duplicate_proposals_are_not_failures(tmp_path: Path, full: bool) -> None:
    """A proposal recorded FAIL with ``duplicate_of`` (never trained) is listed apart from real
    failures, by the fast (RDB) and the full reader alike, and ``show`` says so."""
    url = f"sqlite:///{tmp_path / 'dup.db'}"
    study = create_study(open_storage(url, heartbeat=False), "dup", ("dev_eer", "params"))
    dup = make_trial(None, state=optuna.trial.TrialState.FAIL, fail_reason="duplicate schedule: trial 0 has the same schedule")
    dup.set_user_attr(TRIAL_DUPLICATE_OF.key, 0)
    study.add_trials([
        make_trial((0.1, 300.0), schedule=SCHED_A),
        dup,
        make_trial(None, state=optuna.trial.TrialState.FAIL, fail_reason="NaN loss at epoch 3"),
    ])
    data = load_study_data(study, full=full)
    assert data.duplicates == [(1, 0)]
    assert data.failed == [(2, "NaN loss at epoch 3")]
    assert data.counts["FAIL"] == 2  # Optuna's states are reported as they are
    if not full:
        out = CliRunner().invoke(cli, ["show", "dup", "--storage", url])
        assert out.exit_code == 0, out.output
        assert "duplicate proposals (not trained, resampled): 1: #1 = #0" in out.output
        assert "failed trials: 1\n  #2: NaN loss at epoch 3" in out.output
        js = json.loads(CliRunner().invoke(cli, ["show", "dup", "--storage", url, "--json"]).output)
        assert js["duplicates"] == [{"trial": 1, "duplicate_of": 0}] and [f["trial"] for f in js["failed"]] == [2]
