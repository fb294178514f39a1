"""What the shared-prefix cache saved a study: cache hits and the training compute they spared.

Every COMPLETE trial records in its ``metrics`` user attr how many epochs it loaded from the
prefix cache (``prefix_epochs_reused``) and the training FLOPs of those epochs
(``train_flops_saved``; see :func:`growsearch.search.attrs.trial_prefix_reuse`).
:func:`prefix_reuse` adds them up from the trials themselves, so the numbers are current
even for a study whose driver was killed. On an RDB storage it reads only that attribute
(:mod:`growsearch.report.fastread`); no torch, no Ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from growsearch.search.attrs import TRIAL_METRICS, trial_prefix_reuse

__all__ = ["prefix_reuse", "summarise"]


def summarise(metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The totals over COMPLETE trials' ``metrics`` dicts.

    Returns:
        ``{complete, hits, epochs_reused, train_flops, train_flops_saved, saved_fraction, wait_s}``:
        ``hits`` counts trials that started from a cached prefix; ``train_flops`` is what the
        trials' training cost in all (cached epochs included), ``saved_fraction`` the share of
        it the cache spared; ``wait_s`` the seconds trials waited for a prefix another trial
        was training (:mod:`growsearch.train.prefix_claims`).
    """
    complete = hits = epochs = 0
    total = saved = wait = 0.0
    for m in metrics:
        complete += 1
        total += float(m.get("train_flops") or 0.0)
        r = trial_prefix_reuse(m)
        wait += r["wait_s"] if r is not None else 0.0
        if r is not None and r["epochs"] > 0:
            hits += 1
            epochs += r["epochs"]
            saved += r["train_flops"]
    return {"complete": complete, "hits": hits, "epochs_reused": epochs, "train_flops": total,
            "train_flops_saved": saved, "saved_fraction": saved / total if total > 0 else 0.0, "wait_s": wait}


def prefix_reuse(study: optuna.Study) -> dict[str, Any]:
    """:func:`summarise` over ``study``'s COMPLETE trials."""
    from growsearch.report.fastread import rdb_of

    rdb = rdb_of(study)
    if rdb is not None:
        import sqlalchemy as sa

        from growsearch.report.fastread import read_rows
        from growsearch.search.optuna_private import study_id_of

        try:
            rows = read_rows(rdb, study_id_of(study), 0, user_keys=(TRIAL_METRICS.key,))
        except sa.exc.SQLAlchemyError:
            pass
        else:
            by_id = rows.user_attr[TRIAL_METRICS.key]
            return summarise(m for tid, state in zip(rows.trial_ids, rows.states)
                             if state == "COMPLETE" and isinstance(m := by_id.get(int(tid)), dict))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return summarise(m for t in trials if (m := TRIAL_METRICS.get(t)) is not None)
