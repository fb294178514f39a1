"""HTML report: the figure data functions on hand-made studies, and the page itself opened
in headless Chromium (figures rendered, no console errors, no network)."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import optuna
import pytest

from growsearch.report.front import load_study_data
from growsearch.report.html import (
    MAX_MEMBERS,
    build_report,
    curves_data,
    hv_history_data,
    report_figures,
    scatter3d_data,
    scatter_data,
    timelines_data,
    write_report,
)
from growsearch.report.hypervolume import hypervolume

from synthetic_study import build_demo_study, create_study, make_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
#: Browser noise from software WebGL in a GPU-less headless browser; anything else fails.
BENIGN_CONSOLE = ("GL Driver Message", "Automatic fallback to software WebGL", "Canvas2D: Multiple readback")
GROW = {"version": 1, "events": [{"point": "stage2", "epoch": 1, "neurons": 16}, {"point": "stage2", "epoch": 3, "action": "shrink"}]}


@pytest.fixture
def study3() -> optuna.Study:
    """(dev_eer, params, flops): #0 baseline (cheapest: on the front), #1 paper-dropin
    (dominated by #2), #2 front, #3 dominated by #2."""
    s = create_study(None, "h3")
    s.add_trials([
        make_trial((0.30, 100.0, 10.0), reference="baseline", curves={"dev_eer": [0.5, 0.4, 0.35, 0.3]}),
        make_trial((0.20, 200.0, 20.0), reference="paper-dropin",
                   schedule={"version": 1, "events": [{"point": "stage2", "epoch": 2, "neurons": 64}]}),
        make_trial((0.10, 150.0, 15.0), schedule=GROW, curves={"dev_eer": [0.5, 0.3, 0.2, 0.1]}),
        make_trial((0.40, 300.0, 30.0)),
    ])
    return s


def test_scatter_data_groups(study3: optuna.Study) -> None:
    data = load_study_data(study3)
    d = scatter_data(data, "params")
    assert d is not None and d.axes == ["params", "dev_eer"] and not d.staircase
    by = {s.name: s for s in d.series}
    assert by["trials"].numbers == [3] and by["trials"].coords == [[300.0], [0.40]]
    assert by["Pareto front"].numbers == [2]  # references keep their own marker even on the front
    assert by["baseline"].kind == "reference" and by["baseline"].numbers == [0]
    assert by["paper-dropin"].coords == [[200.0], [0.20]]
    assert scatter_data(data, "train_flops") is None
    d3 = scatter3d_data(data)
    assert d3 is not None and d3.axes == ["params", "flops", "dev_eer"]


def test_two_objectives_staircase_and_no_3d() -> None:
    s = create_study(None, "h2", ("dev_eer", "params"))
    s.add_trials([make_trial((0.1, 3.0)), make_trial((0.2, 1.0)), make_trial((0.3, 2.0))])
    data = load_study_data(s)
    d = scatter_data(data, "params")
    assert d is not None and d.staircase
    front = next(x for x in d.series if x.kind == "front")
    assert front.numbers == [1, 0] and front.coords == [[1.0, 3.0], [0.2, 0.1]]  # x order
    assert scatter3d_data(data) is None
    assert [t for t, _ in report_figures(data)] == ["EER vs params", "hypervolume history", "schedules"]


def test_hv_timeline_curve_data(study3: optuna.Study) -> None:
    data = load_study_data(study3)
    h = hv_history_data(data)
    assert h.numbers == [0, 1, 2, 3] and h.reference == "nadir"
    assert h.hv[-1] == pytest.approx(hypervolume(data.values_array(), data.objectives))
    tl = {t.number: t for t in timelines_data(data)}
    assert set(tl) == {0, 1, 2}  # front member + both references
    assert tl[2].timeline.epochs == 4 and [(s.start, s.end, s.extra) for s in tl[2].timeline.segments] == [(1, 3, 16)]
    assert tl[1].reference == "paper-dropin" and tl[1].timeline.epochs == 6  # config training.epochs
    cv = {c.number: c for c in curves_data(data)}
    assert set(cv) == {0, 2} and cv[2].values == [0.5, 0.3, 0.2, 0.1] and cv[2].on_front and cv[0].on_front


def test_member_cap() -> None:
    s = create_study(None, "cap", ("dev_eer", "params"))
    s.add_trials([make_trial((i / 100, 100.0 - i)) for i in range(MAX_MEMBERS + 5)])
    assert len(timelines_data(load_study_data(s))) == MAX_MEMBERS


def test_page_is_self_contained(study3: optuna.Study) -> None:
    page = build_report(load_study_data(study3), storage="postgresql+psycopg://u:***@h/db")
    assert page.count('class="plotly-graph-div"') + page.count("plotly-graph-div") >= 6
    assert not re.search(r"<script[^>]+src=[\"']https?:", page)  # no CDN
    assert page.count("plotly.js v") >= 1 and len(page) > 1_000_000  # bundle embedded once
    assert "u:***@h" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium); the HTML is not opened in a browser")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    study = build_demo_study(None, "demo", 30, seed=1)
    data = load_study_data(study)
    n_figs = len(report_figures(data))
    page = write_report(tmp_path / "report.html", data)
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert dom.count('class="plotly-graph-div js-plotly-plot"') == n_figs == 6
    assert dom.count('class="main-svg"') >= n_figs  # every figure drew its SVG
    for title in ("dev_eer vs params", "dev_eer vs flops", "Hypervolume history", "Growth schedules", "Per-epoch dev_eer"):
        assert title in dom
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    bad = [ln for ln in console if not any(b in ln for b in BENIGN_CONSOLE)]
    assert not bad, "\n".join(bad)


# ---- tied front members (the quickstart's plasticity schedules end at the baseline's size) -------
def tied_study() -> optuna.Study:
    """The quickstart's shape: the baseline (#0) and four plasticity schedules (#1, #2, #3, #5)
    tie at (0.279, 741, 133658); one dropin (#4) is better and bigger; #6 is dominated."""
    s = create_study(None, "ties")
    base = (0.279167, 741.0, 133658.0)
    plast = lambda p, e: {"version": 1, "events": [{"point": p, "epoch": e, "neurons": 8},  # noqa: E731
                                                   {"point": p, "epoch": e + 2, "action": "shrink"}]}
    trials = [make_trial(base, reference="baseline", curves={"dev_eer": [0.5, 0.42, 0.35, 0.3, 0.29, 0.279167]})]
    for p, e in (("gru1", 1), ("gru1", 2), ("gru4", 2)):
        trials.append(make_trial(base, schedule=plast(p, e), curves={"dev_eer": [0.5, 0.4, 0.15, 0.3, 0.279167, 0.29]}))
    trials.append(make_trial((0.25, 2901.0, 542354.0), schedule={"version": 1, "events": [{"point": "gru1", "epoch": 1, "neurons": 8}]},
                             curves={"dev_eer": [0.5, 0.4, 0.33, 0.3, 0.26, 0.25]}))
    trials.append(make_trial(base, schedule=plast("gru2", 1), curves={"dev_eer": [0.5, 0.4, 0.35, 0.3, 0.29, 0.279167]}))
    trials.append(make_trial((0.35, 1500.0, 300000.0), schedule={"version": 1, "events": [{"point": "gru2", "epoch": 2, "neurons": 4}]}))
    for t, best in zip(trials, (5, 4, 4, 4, 5, 4, None)):
        if best is not None:
            t.user_attrs["metrics"]["best_epoch"] = best
    s.add_trials(trials)
    return s


def test_tied_points_are_grouped_in_the_data() -> None:
    data = load_study_data(tied_study())
    d = scatter_data(data, "params")
    assert d is not None and len(d.ties) == 1
    tie = d.ties[0]
    assert sorted(tie.numbers) == [0, 1, 2, 3, 5] and tie.coords == [741.0, 0.279167]
    for s in d.series:  # every tied point's hover lists all five
        for n, text in zip(s.numbers, s.text):
            if n in tie.numbers:
                assert text == tie.text and all(f"trial {m}" in text for m in tie.numbers)
    assert curves_data(data)[0].reported_epoch is not None


HOVER_PROBE = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var div = document.getElementById('fig-0');
  var ci = div.data.findIndex(function (t) { return t.name === 'Pareto front'; });
  var pi = div.data[ci].text.findIndex(function (t) { return t.indexOf('5 trials here') === 0; });
  Plotly.Fx.hover(div, [{curveNumber: ci, pointNumber: pi}]);
  document.body.setAttribute('data-hover', div.querySelector('.hoverlayer').textContent);
  var marks = div.querySelectorAll('.scatterlayer .trace .points path').length;
  document.body.setAttribute('data-points', String(marks));
}, 300); });
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium); the HTML is not opened in a browser")
def test_tied_front_members_visible_and_hoverable_in_chromium(tmp_path: Path) -> None:
    data = load_study_data(tied_study())
    page = write_report(tmp_path / "ties.html", data)
    page.write_text(page.read_text(encoding="utf-8").replace("</body>", HOVER_PROBE, 1), encoding="utf-8")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000", "--window-size=1200,900",
        "--dump-dom", page.resolve().as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    hover = re.search(r'data-hover="([^"]*)"', dom)
    assert hover, "the hover probe did not run"
    for n in (0, 1, 2, 3, 5):  # hovering the tied front dot names every trial at that point
        assert f"trial {n}" in hover.group(1), hover.group(1)
    assert "×5" in dom  # the count label drawn beside the tie
    pts = re.search(r'data-points="(\d+)"', dom)
    assert pts and int(pts.group(1)) >= 7  # every trial drew a marker (tied ones at one place)
    assert "A trial reports the circled epoch" in dom
