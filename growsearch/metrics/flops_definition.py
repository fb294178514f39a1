"""What the ``flops`` metric means, and the checks that keep reports from mixing meanings.

Kept apart from :mod:`growsearch.metrics.cost` so that read-only commands (``show``,
``pareto``) can warn about mixed definitions without importing torch.
"""

from __future__ import annotations

from typing import Any

from growsearch.search.attrs import STUDY_FLOPS_DEFINITION

#: What the ``flops`` metric means; stored with every run's metrics and every study, so reports
#: never mix definitions silently. ``legacy_v1`` (no marker): FLOPs of a 1 s clip as the model is
#: fed it (ResNet18: always 224 log-Mel frames, so a count per clip, not per second).
FLOPS_DEFINITION = "per_second_length_aware_v2"
LEGACY_FLOPS_DEFINITION = "legacy_v1"


def mark_flops_definition(study: Any) -> str | None:
    """Record :data:`FLOPS_DEFINITION` on an Optuna study (user attr ``flops_definition``).

    A study that already holds COMPLETE trials counted under another definition (or under
    none: ``legacy_v1``) is marked ``mixed: <old> + <new>``.

    Returns:
        A warning line when the study's FLOPs are now mixed, else None.
    """
    have = STUDY_FLOPS_DEFINITION.get(study)
    if have == FLOPS_DEFINITION:
        return None
    if have is None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            STUDY_FLOPS_DEFINITION.set(study, FLOPS_DEFINITION)
            return None
    old = have or LEGACY_FLOPS_DEFINITION
    if not str(old).startswith("mixed"):
        STUDY_FLOPS_DEFINITION.set(study, f"mixed: {old} + {FLOPS_DEFINITION}")
    return (f"study {study.study_name!r}: its earlier trials count FLOPs as {old}, new trials as {FLOPS_DEFINITION}; "
            "their FLOPs are not comparable (see README, cost)")


def flops_definitions_warning(study_attrs: dict[str, Any], metrics: list[dict[str, Any]]) -> str | None:
    """A warning when a study's FLOPs were counted under more than one definition (the study's
    ``flops_definition`` attr says ``mixed``, or trials' ``metrics`` disagree), else None."""
    seen = {str(m.get("flops_definition") or LEGACY_FLOPS_DEFINITION) for m in metrics if m}
    study_def = STUDY_FLOPS_DEFINITION.get(study_attrs)
    if study_def is not None and not str(study_def).startswith("mixed"):
        seen.add(str(study_def))
    if (study_def and str(study_def).startswith("mixed")) or len(seen) > 1:
        what = str(study_def) if study_def and str(study_def).startswith("mixed") else " + ".join(sorted(seen))
        return f"FLOPs in this study were counted under different definitions ({what}); they are not comparable across trials"
    return None
