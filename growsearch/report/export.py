"""Exporting Pareto-optimal growth schedules to a YAML that training can replay.

The file is read by :func:`growsearch.schedule.load_schedules` (top-level ``schedules:``,
each item holding ``schedule:`` plus metadata) and replayed by
``growsearch train CONFIG --schedule best.yaml``::

    growsearch_export: 1
    study: my-study
    storage: postgresql+psycopg://user:***@host/db     # always redacted
    config_hash: 3f2a...             # the study's identity
    train_config_hash: 9c1e...       # data + model + training of its trials: a replay must match it
    versions: {growsearch: 0.1.0, torch: 2.14.1, ...}
    objectives: [{name: dev_eer, direction: minimize}, ...]
    pick: knee
    schedules:
      - trial: 17
        seed: 42
        reference: null
        values: {dev_eer: 0.031, params: 1234567, flops: 8.9e8}
        metrics: {...}
        schedule: {version: 1, events: [...]}

Picks (all among the Pareto set, i.e. ``study.best_trials``):

* ``knee``: the member closest (Euclidean) to the utopia point after normalising each
  objective to ``[0, 1]`` over the front (``(loss - min) / (max - min)``, losses = values
  with maximised objectives negated; an objective constant on the front contributes 0);
  ties go to the lowest trial number.
* ``min-eer``: the member with the lowest ``dev_eer``.
* ``max-params`` with ``N``: the lowest-EER member with at most ``N`` parameters.
* ``all``: every member, best EER first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from growsearch.atomic import atomic_write_text
from growsearch.errors import ConfigError, ScheduleError
from growsearch.redact import redact_text, redact_url
from growsearch.report.front import StudyData, TrialPoint, loss_matrix
from growsearch.schedule import GrowthSchedule
from growsearch.search.attrs import STUDY_CONFIG_HASH, STUDY_TRAIN_CONFIG_HASH, VERSIONS
from growsearch.vocabulary import EER

PICKS = ("knee", "min-eer", "max-params", "all")
EXPORT_VERSION = 1


def knee_point(data: StudyData) -> TrialPoint | None:
    """The front member closest to the utopia point (see module docstring)."""
    front = data.front
    if not front:
        return None
    losses = loss_matrix(data.values_array(front), data.objectives)
    lo, hi = losses.min(axis=0), losses.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (losses - lo) / span
    dist = np.sqrt((z**2).sum(axis=1))
    best = min(range(len(front)), key=lambda i: (round(float(dist[i]), 12), front[i].number))
    return front[best]


def _by_eer(data: StudyData, members: list[TrialPoint]) -> list[TrialPoint]:
    i = data.index(EER) if EER in data.names else 0
    s = data.objectives[i].sign
    return sorted(members, key=lambda p: (s * p.values[i], p.number))


def pick_members(data: StudyData, pick: str, max_params: float | None = None) -> list[TrialPoint]:
    """Choose front members (see module docstring).

    Raises:
        ConfigError: unknown pick (lists the valid ones), ``max-params`` without ``N`` or
            with no member small enough, or an empty front.
    """
    if pick not in PICKS:
        raise ConfigError(f"--pick {pick!r} is unknown; valid: {', '.join(PICKS)}")
    front = data.front
    if not front:
        raise ConfigError(f"study {data.name!r} has no COMPLETE trials, so no Pareto front to export")
    if pick == "knee":
        k = knee_point(data)
        return [k] if k is not None else []
    if pick == "min-eer":
        data.index(EER)
        return _by_eer(data, front)[:1]
    if pick == "all":
        return _by_eer(data, front)
    if max_params is None:
        raise ConfigError("--pick max-params needs a parameter budget N (--pick max-params:N or --max-params N)")
    i = data.index("params")
    fits = [p for p in front if p.values[i] <= max_params]
    if not fits:
        smallest = min(p.values[i] for p in front)
        raise ConfigError(f"--max-params {max_params:g}: no Pareto-optimal trial has so few parameters (the smallest has {smallest:,.0f})")
    return _by_eer(data, fits)[:1]


def parse_pick(text: str, max_params: float | None = None) -> tuple[str, float | None]:
    """``knee`` / ``min-eer`` / ``all`` / ``max-params`` / ``max-params:N`` / ``max-params=N``.

    Raises:
        ConfigError: unparseable ``N``.
    """
    for sep in (":", "="):
        if text.startswith("max-params" + sep):
            raw = text.split(sep, 1)[1]
            try:
                return "max-params", float(raw.replace("_", ""))
            except ValueError:
                raise ConfigError(f"--pick {text!r}: N must be a number (got {raw!r})") from None
    return text, max_params


def _plain(x: Any) -> Any:
    """Make ``x`` YAML-safe (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _current_spelling(schedule: dict[str, Any]) -> dict[str, Any]:
    """A stored schedule as this version writes it (an old study's events say ``optimizer``
    where this one writes ``optimizer_state``); left as stored if it does not read."""
    try:
        return GrowthSchedule.from_dict(schedule).to_dict()
    except ScheduleError:
        return schedule


def export_document(data: StudyData, members: list[TrialPoint], *, pick: str, storage: str = "") -> dict[str, Any]:
    """The export as a dict (see module docstring); the storage URL is redacted."""
    items = []
    for p in members:
        sched = _current_spelling(p.schedule) if p.schedule else {"version": 1, "events": []}
        items.append({
            "trial": p.number,
            "seed": p.seed,
            "reference": p.reference,
            "values": {o.name: v for o, v in zip(data.objectives, p.values)},
            "metrics": p.metrics,
            "schedule": sched,
        })
    return _plain({
        "growsearch_export": EXPORT_VERSION,
        "study": data.name,
        "storage": redact_url(storage) if storage else None,
        "config_hash": STUDY_CONFIG_HASH.get(data.user_attrs),
        "train_config_hash": STUDY_TRAIN_CONFIG_HASH.get(data.user_attrs),
        "versions": VERSIONS.get(data.user_attrs),
        "objectives": [{"name": o.name, "direction": o.direction} for o in data.objectives],
        "pick": pick,
        "schedules": items,
    })


def write_export(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write the export YAML (passwords redacted once more over the whole text).

    Raises:
        ConfigError: the file cannot be written.
    """
    text = redact_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    p = Path(path)
    try:
        atomic_write_text(p, text)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot write export: {exc.strerror}") from None
    return p
