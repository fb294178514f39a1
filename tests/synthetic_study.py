"""Synthetic studies with the growsearch conventions, for tests, benchmarks and demos.

:func:`build_demo_study` writes an Optuna study whose trials carry the attributes the
real search writes (``schedule``, ``curves``, ``metrics``, ``seed``, ``reference``), with
objective values from a made-up but monotone model: more growth = more parameters and
FLOPs and (noisily) lower EER. Nothing here trains anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from growsearch.search.attrs import (
    OPTUNA_CONSTRAINTS,
    STUDY_CONFIG,
    STUDY_CONFIG_HASH,
    TRIAL_CURVES,
    TRIAL_FAIL_REASON,
    TRIAL_METRICS,
    TRIAL_REFERENCE,
    TRIAL_SCHEDULE,
    TRIAL_SEED,
    VERSIONS,
    set_study_objectives,
)
from growsearch.search.objectives import Objective
from growsearch.vocabulary import EER, ObjectiveName

OBJECTIVES: tuple[ObjectiveName, ...] = (EER, "params", "flops")
BASE_PARAMS = 1_000_000
BASE_FLOPS = 500_000_000
POINTS = ("stage2", "stage3")
EPOCHS = 6


def make_trial(
    values: Sequence[float] | None,
    *,
    schedule: dict[str, Any] | None = None,
    reference: str | None = None,
    curves: dict[str, list[float]] | None = None,
    seed: int | None = 42,
    state: TrialState = TrialState.COMPLETE,
    fail_reason: str | None = None,
    params: dict[str, int] | None = None,
    constraints: Sequence[float] | None = None,
) -> optuna.trial.FrozenTrial:
    """A frozen trial with growsearch's user attrs (for ``study.add_trial(s)``); ``constraints``
    are stored as Optuna stores them (feasible when all <= 0)."""
    ua: dict[str, Any] = {TRIAL_SCHEDULE.key: schedule or {"version": 1, "events": []}, TRIAL_SEED.key: seed}
    if curves is not None:
        ua[TRIAL_CURVES.key] = curves
    if reference:
        ua[TRIAL_REFERENCE.key] = reference
    if values is not None and state == TrialState.COMPLETE:
        ua[TRIAL_METRICS.key] = dict(zip(OBJECTIVES, (float(v) for v in values)))
    if fail_reason:
        ua[TRIAL_FAIL_REASON.key] = fail_reason
    params = params or {}
    return create_trial(
        state=state,
        values=list(values) if state == TrialState.COMPLETE and values is not None else None,
        params=params,
        distributions={k: IntDistribution(0, 10_000) for k in params},
        user_attrs=ua,
        system_attrs={OPTUNA_CONSTRAINTS: [float(c) for c in constraints]} if constraints is not None else None,
    )


def create_study(storage: Any, name: str, objectives: Sequence[str] = OBJECTIVES, *, config: dict[str, Any] | None = None) -> optuna.Study:
    """An empty study with directions (all minimise), metric names and provenance attrs."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize"] * len(objectives))
    study.set_metric_names(list(objectives))
    cfg = config or {"name": name, "backbone": "resnet18", "preset": "tiny", "training": {"epochs": EPOCHS}}
    STUDY_CONFIG.set(study, cfg)
    STUDY_CONFIG_HASH.set(study, hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16])
    set_study_objectives(study, [Objective.recorded(o, "minimize") for o in objectives])
    VERSIONS.set(study, {"growsearch": "0.1.0", "optuna": optuna.__version__})
    return study


def _schedule(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, int]]:
    events = []
    grown = {}
    for p in POINTS:
        if rng.random() < 0.6:
            n = int(rng.choice([8, 16, 32, 64]))
            ep = int(rng.integers(1, EPOCHS - 1))
            events.append({"point": p, "epoch": ep, "neurons": n})
            grown[p] = n
            if rng.random() < 0.3 and ep + 1 < EPOCHS:
                events.append({"point": p, "epoch": int(rng.integers(ep + 1, EPOCHS)), "action": "shrink"})
                grown[p] = 0
    return {"version": 1, "events": events}, grown


def demo_values(grown: dict[str, int], rng: np.random.Generator | None) -> tuple[float, float, float]:
    """(dev_eer, params, flops) of a schedule that leaves ``grown`` units per point."""
    g2, g3 = grown.get("stage2", 0), grown.get("stage3", 0)
    params = BASE_PARAMS + 2_300 * g2 + 9_200 * g3
    flops = BASE_FLOPS + 3_000_000 * g2 + 1_500_000 * g3
    noise = 0.0 if rng is None else float(rng.normal(0, 0.01))
    eer = float(np.clip(0.20 - 0.0012 * g2 - 0.0009 * g3 + noise, 0.005, 0.5))
    return eer, float(params), float(flops)


def build_demo_study(
    storage: Any, name: str = "demo", n_trials: int = 50, *, seed: int = 0, n_failed: int = 2, references: bool = True
) -> optuna.Study:
    """A study of ``n_trials`` COMPLETE searched trials (+ references, + ``n_failed`` FAIL)."""
    rng = np.random.default_rng(seed)
    study = create_study(storage, name)
    trials = []
    if references:
        for label, grown, sched in (
            ("baseline", {}, {"version": 1, "events": []}),
            (
                "paper-dropin",
                {"stage2": 64},
                {"version": 1, "label": "paper-dropin", "events": [{"point": "stage2", "epoch": 3, "neurons": 64}]},
            ),
        ):
            v = demo_values(grown, None)
            trials.append(make_trial(v, schedule=sched, reference=label, curves=_curves(v[0], sched, rng)))
    for _ in range(n_trials):
        sched, grown = _schedule(rng)
        v = demo_values(grown, rng)
        params = {"g2": grown.get("stage2", 0), "g3": grown.get("stage3", 0)}
        trials.append(make_trial(v, schedule=sched, curves=_curves(v[0], sched, rng), params=params))
    for i in range(n_failed):
        trials.append(make_trial(None, state=TrialState.FAIL, fail_reason=f"NaN loss at epoch {i + 1}"))
    study.add_trials(trials)
    return study


def _curves(final_eer: float, sched: dict[str, Any], rng: np.random.Generator) -> dict[str, list[float]]:
    eers = [round(final_eer + 0.3 * 0.6**e + float(rng.normal(0, 0.003)), 5) for e in range(EPOCHS)]
    eers[-1] = final_eer
    return {EER: eers, "train_loss": [round(0.7 * 0.7**e, 5) for e in range(EPOCHS)]}
