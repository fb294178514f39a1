"""The HTML report of a study: one self-contained, offline file.

Each figure is a *data* function (plain data, tested) plus a thin *render* function
(a plotly figure), as in ``optuna.visualization``:

=====================  ==========================  ==============================
figure                 data                         render
=====================  ==========================  ==============================
EER vs parameters      :func:`scatter_data`         :func:`render_scatter`
EER vs FLOPs           :func:`scatter_data`         :func:`render_scatter`
3-D front              :func:`scatter3d_data`       :func:`render_scatter3d`
hypervolume history    :func:`hv_history_data`      :func:`render_hv_history`
schedules (timelines)  :func:`timelines_data`       :func:`render_timelines`
dev-EER curves         :func:`curves_data`          :func:`render_curves`
=====================  ==========================  ==============================

Reference trials (user attr ``reference``: ``baseline`` = the un-grown backbone,
``paper-dropin`` = the paper's single dropin) get their own legend entry and marker.
The page embeds plotly.js once (``include_plotlyjs=True``), so it works offline.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from growsearch.report.front import StudyData, TrialPoint, schedule_summary
from growsearch.report.hypervolume import hypervolume, hypervolume_history
from growsearch.report.timeline import Timeline, run_epochs, schedule_timeline
from growsearch.search.attrs import STUDY_CONFIG, STUDY_CONFIG_HASH
from growsearch.vocabulary import COST_OBJECTIVES, EER

#: Marker symbol per reference label; other labels get ``REF_SYMBOL_OTHER``.
REF_SYMBOLS = {"baseline": "square", "paper-dropin": "star"}
REF_SYMBOL_OTHER = "diamond"
REF_COLORS = {"baseline": "#2ca02c", "paper-dropin": "#ff7f0e"}
#: At most this many front members get a timeline / curve (best EER first).
MAX_MEMBERS = 40
#: At most this many non-front trials are drawn in scatter plots (evenly sub-sampled).
MAX_BACKGROUND = 5000


# ---- data ---------------------------------------------------------------------------------
@dataclass
class Series:
    """One legend entry of a scatter: ``kind`` is ``trials``, ``front`` or ``reference``."""

    name: str
    kind: str
    numbers: list[int] = field(default_factory=list)
    coords: list[list[float]] = field(default_factory=list)  # one list per axis
    text: list[str] = field(default_factory=list)


@dataclass
class ScatterData:
    """Axes names and the series of a 2-D or 3-D scatter.

    ``staircase``: the axes are all the study's objectives, so the front is a staircase
    worth drawing as a line (with more objectives a 2-D projection of the front is not).
    """

    axes: list[str]
    series: list[Series]
    staircase: bool = False
    ties: list[Tie] = field(default_factory=list)


@dataclass
class Tie:
    """Front members and references drawn at the same place: ``coords`` (one per axis), the
    trial ``numbers`` there and ``text``, the hover listing every one of them."""

    coords: list[float]
    numbers: list[int]
    text: str


def _ties(series: list[Series]) -> list[Tie]:
    """Groups of front/reference points with identical coordinates (e.g. plasticity schedules
    that shrink back to the baseline's size tie with it). Each tied point's hover then lists
    the whole group, and the figure labels the group with its count."""
    groups: dict[tuple[float, ...], list[tuple[Series, int]]] = {}
    for s in series:
        if s.kind == "trials":
            continue
        for k in range(len(s.numbers)):
            groups.setdefault(tuple(c[k] for c in s.coords), []).append((s, k))
    ties = []
    for coords, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: (m[0].kind != "reference", m[0].numbers[m[1]]))
        text = f"{len(members)} trials here:<br>" + "<br>".join(s.text[k] for s, k in members)
        for s, k in members:
            s.text[k] = text
        ties.append(Tie(list(coords), [s.numbers[k] for s, k in members], text))
    return ties


def _hover(p: TrialPoint, data: StudyData) -> str:
    vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(data.names, p.values))
    ref = f" [{p.reference}]" if p.reference else ""
    sched = f"<br>{_html.escape(schedule_summary(p.schedule))}" if p.attrs_loaded else ""
    return f"trial {p.number}{ref}: {vals}{sched}"


def _series(data: StudyData, axes: Sequence[str], max_background: int = MAX_BACKGROUND) -> list[Series]:
    idx = [data.index(a) for a in axes]
    groups: dict[str, Series] = {
        "trials": Series("trials", "trials"),
        "front": Series("Pareto front", "front"),
    }
    front = _front_numbers(data)
    background = [p for p, f in zip(data.points, data.on_front) if not f and not p.reference]
    step = max(1, -(-len(background) // max(1, max_background)))
    chosen = background[::step] + [p for p, f in zip(data.points, data.on_front) if f or p.reference]
    for p in chosen:
        if p.reference:
            key = f"ref:{p.reference}"
            groups.setdefault(key, Series(p.reference, "reference"))
        else:
            key = "front" if p.number in front else "trials"
        s = groups[key]
        s.numbers.append(p.number)
        if not s.coords:
            s.coords = [[] for _ in axes]
        for c, i in zip(s.coords, idx):
            c.append(p.values[i])
        s.text.append(_hover(p, data))
    for s in groups.values():
        if not s.coords:
            s.coords = [[] for _ in axes]
    fr = groups["front"]
    if fr.numbers:  # draw the front as a staircase in the order of the x axis
        order = sorted(range(len(fr.numbers)), key=lambda k: tuple(c[k] for c in fr.coords))
        fr.numbers = [fr.numbers[k] for k in order]
        fr.coords = [[c[k] for k in order] for c in fr.coords]
        fr.text = [fr.text[k] for k in order]
    return [s for s in groups.values() if s.numbers or s.kind != "reference"]


def _front_numbers(data: StudyData) -> set[int]:
    cache = getattr(data, "_front_numbers", None)
    if cache is None:
        cache = {p.number for p, f in zip(data.points, data.on_front) if f}
        data._front_numbers = cache  # type: ignore[attr-defined]
    return cache


def scatter_data(data: StudyData, x: str, y: str = EER, *, max_background: int = MAX_BACKGROUND) -> ScatterData | None:
    """Trials, front members and references on two objectives (``None`` if either is missing).

    Non-front trials are evenly sub-sampled to at most ``max_background`` points."""
    if x not in data.names or y not in data.names:
        return None
    series = _series(data, [x, y], max_background)
    return ScatterData(axes=[x, y], series=series, staircase=set(data.names) == {x, y}, ties=_ties(series))


def scatter3d_data(data: StudyData) -> ScatterData | None:
    """The 3-D front: ``params``, ``flops``, ``dev_eer`` when present, else the first three
    objectives (``None`` with fewer than three objectives)."""
    if len(data.names) < 3:
        return None
    pref: list[str] = [n for n in ("params", "flops", EER) if n in data.names]
    axes = pref if len(pref) == 3 else data.names[:3]
    series = _series(data, axes)
    return ScatterData(axes=axes, series=series, ties=_ties(series))


@dataclass
class HVHistory:
    """Hypervolume after each COMPLETE trial (by trial number) and the reference mode."""

    numbers: list[int]
    hv: list[float]
    reference: str


def hv_history_data(data: StudyData, reference: str | Sequence[float] = "nadir") -> HVHistory:
    """Hypervolume history of the study (see :mod:`growsearch.report.hypervolume`)."""
    hv = hypervolume_history(data.values_array(), data.objectives, reference)
    return HVHistory([p.number for p in data.points], [float(v) for v in hv], reference if isinstance(reference, str) else "explicit")


@dataclass
class MemberTimeline:
    """The timeline of one front member (or reference)."""

    number: int
    reference: str | None
    timeline: Timeline
    summary: str


def _members(data: StudyData) -> list[TrialPoint]:
    eer = data.names.index(EER) if EER in data.names else 0
    sign = data.objectives[eer].sign
    front = sorted(data.front, key=lambda p: (sign * p.values[eer], p.number))[:MAX_MEMBERS]
    nums = {p.number for p in front}
    return front + [p for p in data.references if p.number not in nums]


def timelines_data(data: StudyData) -> list[MemberTimeline]:
    """Timelines of the front members (best EER first, at most ``MAX_MEMBERS``) and of the
    reference trials; run length from each trial's curves or the study config."""
    cfg = STUDY_CONFIG.get(data.user_attrs)
    out = []
    for p in _members(data):
        try:
            tl = schedule_timeline(p.schedule, run_epochs(p.curves, cfg if isinstance(cfg, dict) else None))
        except Exception:  # noqa: BLE001 - an unparseable stored schedule must not break the report
            tl = Timeline(epochs=0, segments=(), marks=())
        out.append(MemberTimeline(p.number, p.reference, tl, schedule_summary(p.schedule)))
    return out


@dataclass
class Curve:
    """A per-epoch curve of one trial."""

    number: int
    reference: str | None
    on_front: bool
    epochs: list[int]
    values: list[float]
    reported_epoch: int | None = None  # the epoch whose checkpoint the trial reports (``best_epoch``)


def curves_data(data: StudyData, key: str = EER) -> list[Curve]:
    """Per-epoch ``key`` curves (``curves`` user attr) of front members and references."""
    front = _front_numbers(data)
    out = []
    for p in _members(data):
        c = p.curves.get(key) if p.curves else None
        if isinstance(c, list) and c:
            vals = [float(v) if v is not None else float("nan") for v in c]
            best = p.metrics.get("best_epoch") if isinstance(p.metrics, dict) else None
            best = best if isinstance(best, int) and 0 <= best < len(vals) else None
            out.append(Curve(p.number, p.reference, p.number in front, list(range(len(vals))), vals, best))
    return out


#: Printed under the curves: which epoch a trial reports.
CURVES_NOTE = ("Epochs count from 0 (the point at epoch e: the dev EER after epoch e trained). A trial reports the circled "
               "epoch: its lowest dev EER within its last phase, from its last growth or shrink event on "
               "(training.best_checkpoint: last_phase, the default), so its curve can dip below the value it reports.")


# ---- render -------------------------------------------------------------------------------
def _marker(s: Series) -> dict[str, Any]:
    if s.kind == "trials":
        return {"color": "rgba(150,150,150,0.45)", "size": 5}
    if s.kind == "front":
        return {"color": "#d62728", "size": 9}
    # hollow, so a front member at the same place (a tie) shows through
    return {"symbol": REF_SYMBOLS.get(s.name, REF_SYMBOL_OTHER) + "-open", "size": 16, "line": {"width": 2.5},
            "color": REF_COLORS.get(s.name, "#9467bd")}


def render_scatter(d: ScatterData, *, title: str = "") -> go.Figure:
    """2-D scatter; the front is drawn as a line through its members."""
    fig = go.Figure()
    for s in d.series:
        mode = "lines+markers" if s.kind == "front" and d.staircase else "markers"
        name = f"reference: {s.name}" if s.kind == "reference" else s.name
        fig.add_trace(go.Scatter(x=s.coords[0], y=s.coords[1], mode=mode, name=name, marker=_marker(s),
                                 line={"shape": "hv", "width": 1}, text=s.text, hoverinfo="text"))
    if d.ties:  # "×5" beside each group of tied points; hovering it (or any of them) lists all
        fig.add_trace(go.Scatter(
            x=[t.coords[0] for t in d.ties], y=[t.coords[1] for t in d.ties], mode="text", name="tied trials",
            text=[f"×{len(t.numbers)}" for t in d.ties], textposition="top right", textfont={"size": 15, "color": "#d62728"},
            hovertext=[t.text for t in d.ties], hoverinfo="text", showlegend=False))
    fig.update_layout(title=title or f"{d.axes[1]} vs {d.axes[0]}", xaxis_title=d.axes[0], yaxis_title=d.axes[1])
    if d.axes[0] in COST_OBJECTIVES:
        fig.update_xaxes(type="log")
    return fig


def render_scatter3d(d: ScatterData, *, title: str = "Pareto front (3-D)") -> go.Figure:
    fig = go.Figure()
    for s in d.series:
        name = f"reference: {s.name}" if s.kind == "reference" else s.name
        mk = _marker(s)
        if s.kind == "reference":
            mk = {"symbol": "diamond-open", "size": 9, "color": REF_COLORS.get(s.name, "#9467bd"), "line": {"width": 2}}
        elif s.kind == "front":
            mk = {"color": "#d62728", "size": 5}
        else:
            mk = {"color": "rgba(150,150,150,0.5)", "size": 3}
        fig.add_trace(go.Scatter3d(x=s.coords[0], y=s.coords[1], z=s.coords[2], mode="markers", name=name, marker=mk, text=s.text, hoverinfo="text"))
    if d.ties:
        fig.add_trace(go.Scatter3d(x=[t.coords[0] for t in d.ties], y=[t.coords[1] for t in d.ties], z=[t.coords[2] for t in d.ties],
                                   mode="text", text=[f"×{len(t.numbers)}" for t in d.ties], textposition="middle right",
                                   textfont={"size": 13, "color": "#d62728"}, hovertext=[t.text for t in d.ties], hoverinfo="text",
                                   showlegend=False))
    axis: dict[str, Any] = {"title": {"font": {"size": 14}}, "tickfont": {"size": 11}}
    log = {a: {"type": "log"} if a in COST_OBJECTIVES else {} for a in d.axes}
    fig.update_layout(
        title=title, height=720, margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"x": 0, "y": 1, "bgcolor": "rgba(255,255,255,0.7)"},
        scene={"xaxis": {**axis, **log[d.axes[0]], "title": {**axis["title"], "text": d.axes[0]}},
               "yaxis": {**axis, **log[d.axes[1]], "title": {**axis["title"], "text": d.axes[1]}},
               "zaxis": {**axis, **log[d.axes[2]], "title": {**axis["title"], "text": d.axes[2]}},
               "aspectmode": "cube", "camera": {"eye": {"x": 1.6, "y": 1.6, "z": 1.0}}},
    )
    return fig


def render_hv_history(d: HVHistory) -> go.Figure:
    fig = go.Figure(go.Scatter(x=d.numbers, y=d.hv, mode="lines+markers", name="hypervolume", marker={"size": 3}))
    fig.update_layout(title=f"Hypervolume history (normalised, reference: {d.reference})", xaxis_title="trial", yaxis_title="hypervolume")
    return fig


def _blue(extra: int, top: int) -> str:
    """Light to dark blue as ``extra`` goes from 0 to ``top`` (explicit colours: no colorscale)."""
    f = min(1.0, extra / top) if top > 0 else 1.0
    r, g, b = (int(round(a + (c - a) * f)) for a, c in ((198, 8), (219, 48), (239, 107)))
    return f"rgb({r},{g},{b})"


def render_timelines(items: list[MemberTimeline]) -> go.Figure:
    """One row per (member, growth point): bars where the point is grown, ▲ grow / ▼ shrink."""
    fig = go.Figure()
    rows: list[str] = []
    top = max((sg.extra for it in items for sg in it.timeline.segments), default=1)
    for it in items:
        tag = f"#{it.number}" + (f" [{it.reference}]" if it.reference else "")
        pts = it.timeline.points or ["(no growth)"]
        rows += [f"{tag} {pt}" for pt in pts]
        if not it.timeline.points:
            span = [-0.5, max(1, it.timeline.epochs) - 0.5]
            fig.add_trace(go.Scatter(x=span, y=[f"{tag} (no growth)"] * 2, mode="lines", line={"color": "grey", "dash": "dot", "width": 2},
                                     showlegend=False, hovertext=[f"{tag}: no growth"] * 2, hoverinfo="text"))
        segs = it.timeline.segments
        if segs:
            fig.add_trace(go.Bar(  # epoch e is the cell [e - 0.5, e + 0.5], as the curves' point at x = e
                y=[f"{tag} {s.point}" for s in segs], x=[s.end - s.start for s in segs], base=[s.start - 0.5 for s in segs],
                orientation="h", text=[f"+{s.extra}" for s in segs], textposition="inside", insidetextanchor="middle",
                textangle=0, textfont={"size": 13}, width=0.7,
                marker={"color": [_blue(s.extra, top) for s in segs], "line": {"width": 1, "color": "#1f3b70"}},
                hovertext=[f"{tag}: {s.point} +{s.extra} units, epochs {s.start}-{s.end - 1}" for s in segs], hoverinfo="text", showlegend=False))
        marks = it.timeline.marks
        if marks:
            fig.add_trace(go.Scatter(  # an event at epoch e applies before e trains: on the boundary e - 0.5
                x=[m.epoch - 0.5 for m in marks], y=[f"{tag} {m.point}" for m in marks], mode="markers",
                marker={"symbol": ["triangle-up" if m.delta >= 0 else "triangle-down" for m in marks],
                        "color": ["#2ca02c" if m.delta >= 0 else "#d62728" for m in marks], "size": 13,
                        "line": {"width": 1, "color": "white"}},
                hovertext=[f"{tag}: {m.label}" for m in marks], hoverinfo="text", showlegend=False))
    n_epochs = max((it.timeline.epochs for it in items), default=1)
    fig.update_layout(title="Growth schedules of the front (bar = extra units; ▲ grow, ▼ shrink, before the epoch they precede)",
                      xaxis_title=EPOCH_AXIS, barmode="overlay", height=max(320, 40 * len(rows) + 140),
                      margin={"l": 10}, font={"size": 13})
    fig.update_xaxes(**_epoch_ticks(n_epochs))
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(rows)), type="category", tickfont={"size": 14}, automargin=True)
    return fig


#: The x axis of every per-epoch figure: epochs count from 0, as in schedules, logs and metrics.json.
EPOCH_AXIS = "epoch (from 0)"


def _epoch_ticks(n_epochs: int) -> dict[str, Any]:
    """Integer ticks 0..n-1 with each epoch a unit-wide cell centred on its number."""
    return {"tickmode": "linear", "tick0": 0, "dtick": 1, "range": [-0.6, max(1, n_epochs) - 0.4], "zeroline": False}


def render_curves(curves: list[Curve], key: str = EER) -> go.Figure:
    fig = go.Figure()
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
    for i, c in enumerate(curves):
        name = f"#{c.number}" + (f" [{c.reference}]" if c.reference else "")
        dash = "dash" if c.reference else "solid"
        color = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=c.epochs, y=c.values, mode="lines+markers", name=name, line={"dash": dash, "color": color},
                                 marker={"size": 4, "color": color}, legendgroup=name))
        if c.reported_epoch is not None:  # circled: the epoch whose checkpoint the trial reports
            fig.add_trace(go.Scatter(x=[c.reported_epoch], y=[c.values[c.reported_epoch]], mode="markers", legendgroup=name,
                                     marker={"symbol": "circle-open", "size": 13, "line": {"width": 2}, "color": color},
                                     showlegend=False, hovertext=[f"{name} reports epoch {c.reported_epoch}: {key} {c.values[c.reported_epoch]:.4g}"],
                                     hoverinfo="text"))
    n = max((len(c.epochs) for c in curves), default=1)
    fig.update_layout(title=f"Per-epoch {key} of front members", xaxis_title=EPOCH_AXIS, yaxis_title=key)
    fig.update_xaxes(**_epoch_ticks(n))
    return fig


# ---- page ---------------------------------------------------------------------------------
def report_figures(data: StudyData, *, reference: str | Sequence[float] = "nadir") -> list[tuple[str, go.Figure]]:
    """``(title, figure)`` for every figure the study's data supports."""
    figs: list[tuple[str, go.Figure]] = []
    for x in ("params", "flops"):
        d = scatter_data(data, x)
        if d is not None:
            figs.append((f"EER vs {x}", render_scatter(d)))
    if EER not in data.names and len(data.names) >= 2:
        d = scatter_data(data, data.names[1], data.names[0])
        if d is not None:
            figs.append(("front", render_scatter(d)))
    d3 = scatter3d_data(data)
    if d3 is not None:
        figs.append(("3-D front", render_scatter3d(d3)))
    figs.append(("hypervolume history", render_hv_history(hv_history_data(data, reference))))
    figs.append(("schedules", render_timelines(timelines_data(data))))
    cv = curves_data(data)
    if cv:
        figs.append(("dev-EER curves", render_curves(cv)))
    return figs


def build_report(data: StudyData, *, reference: str | Sequence[float] = "nadir", storage: str = "") -> str:
    """The whole page as a string (plotly.js embedded once, no network needed)."""
    figs = report_figures(data, reference=reference)
    hv = hypervolume(data.values_array(), data.objectives, reference)
    parts = []
    for i, (title, fig) in enumerate(figs):
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig-{i}", config={"displaylogo": False})
        note = f'<p class="note">{_html.escape(CURVES_NOTE)}</p>' if title == "dev-EER curves" else ""
        parts.append(f'<section class="figure" data-title="{_html.escape(title)}">{div}{note}</section>')
    e = _html.escape
    refs = ", ".join(f"#{p.number} {p.reference}" for p in data.references) or "none"
    summary = (
        f"<p>Study <b>{e(data.name)}</b>{' in ' + e(storage) if storage else ''}: {len(data.points)} complete trials, "
        f"Pareto front of {int(data.on_front.sum())}, objectives {e(', '.join(f'{o.name} ({o.direction})' for o in data.objectives))}; "
        f"normalised hypervolume {hv:.4f} (reference {e(str(reference))}); reference trials: {e(refs)}; "
        f"config hash {e(STUDY_CONFIG_HASH.get(data.user_attrs) or '-')}.</p>"
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>growsearch: {e(data.name)}</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em} section.figure{margin-bottom:2em} p.note{color:#444;margin:0.3em 0 0 1em}</style>"
        f"</head><body><h1>growsearch study {e(data.name)}</h1>{summary}\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_report(path: str | Path, data: StudyData, *, reference: str | Sequence[float] = "nadir", storage: str = "") -> Path:
    """Write :func:`build_report` to ``path`` (parent folders created) and return it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(build_report(data, reference=reference, storage=storage), encoding="utf-8")
    return p
