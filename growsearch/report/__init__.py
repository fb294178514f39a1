"""Reports on a study: Pareto front, hypervolume, HTML report, export, dashboard.

Public API::

    from growsearch.report import resolve_study, load_study_data, hypervolume
    ref = resolve_study("studies/quickstart.yaml")        # or ("name", storage="sqlite:///...")
    data = load_study_data(ref.load())                     # one read of the study
    data.front                                             # Pareto-optimal TrialPoints
    hypervolume(data.values_array(), data.objectives)      # normalised, in [0, 1]
"""

from __future__ import annotations

from growsearch.report.export import export_document, knee_point, pick_members, write_export
from growsearch.report.front import (
    StudyData,
    TrialPoint,
    front_csv,
    front_records,
    front_table,
    load_study_data,
    objectives_of,
    pareto_mask,
)
from growsearch.report.hypervolume import HVSpace, hv_space, hypervolume, hypervolume_history
from growsearch.report.study_ref import StudyRef, resolve_study
from growsearch.report.timeline import Segment, Timeline, schedule_timeline
from growsearch.search.objectives import Objective

__all__ = [
    "HVSpace",
    "Objective",
    "Segment",
    "StudyData",
    "StudyRef",
    "Timeline",
    "TrialPoint",
    "export_document",
    "front_csv",
    "front_records",
    "front_table",
    "hv_space",
    "hypervolume",
    "hypervolume_history",
    "knee_point",
    "load_study_data",
    "objectives_of",
    "pareto_mask",
    "pick_members",
    "resolve_study",
    "schedule_timeline",
    "write_export",
]
