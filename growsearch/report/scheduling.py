"""What a study's trial scheduler did: trials it stopped early and population-based-growth lineages.

Read from the trials' own attrs (``pruned``: scheduler, rung or boundary, reason; ``lineage``:
parent, boundary, replaced member, generation), so the numbers are current even for a study
whose driver was killed. Used by ``growsearch show``.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from growsearch.search.attrs import TRIAL_LINEAGE, TRIAL_PRUNED

__all__ = ["scheduling_summary"]


def scheduling_summary(study: optuna.Study) -> dict[str, list[dict[str, Any]]]:
    """``{"pruned": [...], "children": [...]}``: each PRUNED trial (``trial``, ``scheduler``, ``rung``,
    ``reason``) and each population-based-growth child that was not a failed attempt (``trial``,
    ``state``, ``parent``, ``boundary``, ``replaces``, ``generation``), by trial number."""
    pruned, children = [], []
    for t in study.get_trials(deepcopy=False):
        info = TRIAL_PRUNED.get(t)
        if t.state == TrialState.PRUNED:
            info = info or {}
            pruned.append({"trial": t.number, "scheduler": info.get("scheduler"), "rung": info.get("rung"),
                           "reason": str(info.get("reason") or "(no reason recorded)")})
        lineage = TRIAL_LINEAGE.get(t)
        if lineage is not None and t.state != TrialState.FAIL:
            children.append({"trial": t.number, "state": t.state.name, **{k: lineage.get(k) for k in
                             ("parent", "boundary", "replaces", "generation")}})
    return {"pruned": pruned, "children": children}
