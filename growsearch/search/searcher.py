"""A Ray Tune searcher whose only state is the Optuna study in the database.

Ray's stock ``OptunaSearch`` keeps its own pickled copy of the study and drifts from the
database after a crash (trials stuck RUNNING, results dropped, configs run twice). This
searcher keeps nothing that matters in memory:

Life cycle (driven by Tune; several drivers may run the same study at once)::

    s = StudySearcher(study, space, objectives=[...], budget_trials=8)
    s.resync()            # write this driver's lease; RUNNING trials of *dead* drivers -> FAIL
                          # (fail_reason) and re-enqueued; references enqueued once
    s.suggest(ray_id)     # study.ask() + space.define_by_run(trial) -> config for the trainable
    s.on_trial_complete(ray_id, result, error)   # study.tell(values) or FAIL + fail_reason
    s.close(reason)       # trials still running (Ctrl-C, wall time) -> FAIL + re-enqueued

- The budget counts finished trials in the whole study (all drivers): COMPLETE, and PRUNED
  (stopped early by a trial scheduler, :meth:`StudySearcher.prune`); ``suggest`` asks for a
  new trial only while finished + RUNNING trials in the database are below it, so several
  drivers together stop at the budget. Two drivers asking the last free slot at the same
  instant may overshoot it by one trial each (there is no cross-process lock around ask). A
  training-FLOPs budget (``budget_train_flops``) stops proposals once the FLOPs recorded by
  COMPLETE and PRUNED trials reach it (running trials finish: it may be overshot by them).
- No schedule is trained twice: a proposal whose decoded schedule equals a COMPLETE, PRUNED,
  RUNNING or WAITING trial's is marked FAIL (``duplicate_of``, never trained) and another is
  asked (:meth:`StudySearcher._twin`); after ``MAX_REPEATS`` such proposals in a row the session
  gives up (``gave_up``). Resampled rather than told the earlier result again: a copy would
  count twice toward the budget and stand twice on the Pareto front. The sampler itself is
  reseeded per trial (:mod:`growsearch.search.sampling`), so runs and drivers do not replay
  each other.
- References count only when COMPLETE or PRUNED (or still to run): one that FAILed is
  enqueued again by the next session.
- A storage fault (read-only database, full disk; :func:`~growsearch.search.storage.storage_fault`)
  never reaches Tune: it is recorded in ``storage_error`` and the session stops asking.
- Failed trials are replaced. A trial is never told twice: the stored state is checked before
  every tell, and a FAIL is a compare-and-swap on the trial's state (``_fail``), so of two
  drivers failing the same trial only one re-enqueues it.
- Only a result carrying ``final: True`` (sent by the trainable when ``train()`` returned)
  completes a trial; a trial stopped early (time budget, interrupt) never pollutes the front.
- A trial scheduler may gate new trials (``may_ask``: population-based growth proposes its
  population, then only the children it enqueues); the session ends when the gate is shut
  and nothing of this driver runs.
- Leases, heartbeats and the reaping of dead drivers' trials live in
  :mod:`growsearch.search.lease` (:class:`~growsearch.search.lease.DriverLease`); the searcher
  keeps one and hands it the trials it runs. A heartbeat that keeps failing
  (``execution.heartbeat_max_failures`` in a row) stops the session (``lease_lost``): the
  runner ends it, running trials re-enqueued, with one line and a non-zero exit.
- Optuna's private names (storage ids, the RDB tables) are reached only through
  :mod:`growsearch.search.optuna_private`.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from growsearch.schedule import GrowthSchedule
from growsearch.search import optuna_private as op
from growsearch.search.attrs import (
    PREFIX_FLOPS_SAVED,
    TRIAL_ATTEMPT,
    TRIAL_CONSTRAINT,
    TRIAL_CURVES,
    TRIAL_DRIVER,
    TRIAL_METRICS,
    TRIAL_NODE,
    TRIAL_PROMOTED_FROM,
    TRIAL_PRUNED,
    TRIAL_RAY_TRIAL_ID,
    TRIAL_REFERENCE,
    TRIAL_REQUEUED_FROM,
    TRIAL_SCHEDULE,
    TRIAL_SEED,
    VERSIONS,
)
from growsearch.search.lease import HEARTBEAT_MAX_FAILURES, LEASE_PREFIX, DriverLease, driver_alive, lease_key
from growsearch.search.propose import find_twin, propose
from growsearch.search.space import SearchSpace
from growsearch.search.storage import storage_fault

__all__ = ["StudySearcher", "driver_alive", "lease_key", "FINAL_KEY", "PAYLOAD_KEY", "LEASE_PREFIX"]

#: Result key the trainable sets on its last report (only such results complete a trial).
FINAL_KEY = "gs_final"
#: Result key holding the JSON payload of the last report (metrics, curves, node, ...).
PAYLOAD_KEY = "gs_payload"
#: Seconds ``suggest`` waits between database counts while the rest of the budget runs.
IDLE_RECHECK = 1.0
#: Proposals in a row repeating a schedule the study has before a session gives up.
MAX_REPEATS = 25
#: The finished states that count toward the trial budget and that a new proposal never repeats.
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


class LeaseStopper(Stopper):
    """Stops the whole Tune run once the searcher's lease is lost (its heartbeat kept failing)."""

    def __init__(self, searcher: StudySearcher) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.searcher.lease_lost is not None


class StudySearcher(Searcher):
    """Ray Tune ``Searcher`` backed by an Optuna study (see the module docstring).

    Args:
        study: the study (its storage is the source of truth).
        space: the bound search space (define-by-run function).
        objectives: metric names in the study's objective order.
        budget_trials: stop once this many trials are COMPLETE (``None``: no limit).
        references: ``(label, schedule)`` pairs enqueued once per study.
        constraint_fn: metrics -> named constraint values (``<= 0`` feasible), recorded with
            ``trial.set_constraint`` (what Optuna 5 samplers and ``best_trials`` read) and as
            the ``constraint`` user attr (a list, in the same order).
        seed: the training seed, recorded as the ``seed`` user attr.
        versions: package versions, recorded as the ``versions`` user attr.
        max_failures: give up (FINISHED) after this many failed trials in this session.
        heartbeat_max_failures: stop the session (``lease_lost``) after this many failed
            heartbeats in a row.
        budget_train_flops: propose nothing once the study's recorded training FLOPs
            (:meth:`spent_train_flops`) reach this (``None``: no limit).
    """

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        *,
        objectives: Sequence[str],
        budget_trials: int | None = None,
        references: Sequence[tuple[str, GrowthSchedule]] = (),
        constraint_fn: Callable[[dict[str, Any]], dict[str, float]] | None = None,
        seed: int | None = None,
        versions: dict[str, str] | None = None,
        max_failures: int | None = None,
        heartbeat_max_failures: int = HEARTBEAT_MAX_FAILURES,
        budget_train_flops: float | None = None,
    ) -> None:
        super().__init__(metric=None, mode=None)
        self.study = study
        self.space = space
        self.objectives = list(objectives)
        self.budget_trials = budget_trials
        self.budget_train_flops = budget_train_flops
        self.n_pruned = 0  # this session
        self.references = list(references)
        self.constraint_fn = constraint_fn
        self.seed = seed
        self.versions = dict(versions or {})
        self.max_failures = max_failures if max_failures is not None else max(3, budget_trials or 3)
        self.n_complete = 0
        self.n_failed = 0  # this session
        self.n_requeued = 0
        self.failures: list[tuple[int, str]] = []
        self.live: dict[str, optuna.Trial] = {}
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self._pending_error: dict[str, optuna.Trial] = {}
        self._stop = False
        self._lock = threading.RLock()
        self.lease = DriverLease(study, lock=self._lock, running_ids=self._running_ids, on_reaped=self._reaped,
                                 on_fault=self.record_storage_fault, on_lost=self._lease_lost,
                                 max_failures=heartbeat_max_failures)
        self.driver = self.lease.driver
        self.lease_lost: str | None = None  # the heartbeat kept failing: the session stops
        self._idle_until = 0.0  # suggest: waiting on other drivers' trials, next DB count after this
        self.gave_up: str | None = None  # why this session stopped asking before the budget
        self.storage_error: str | None = None  # a storage fault (read-only, disk full) that ended it
        self.on_told: Callable[[optuna.trial.FrozenTrial], None] | None = None
        #: a trial scheduler's gate (population-based growth): ``False`` = ask nothing now
        self.may_ask: Callable[[], bool] | None = None

    # ---- driver lease and heartbeats (growsearch.search.lease) ----------------------------
    @property
    def lease_key(self) -> str:
        """This driver's study user attr (``driver:<token>``)."""
        return self.lease.key

    def leases(self) -> dict[str, dict[str, Any]]:
        """Every driver lease recorded on the study, by token (:meth:`DriverLease.leases`)."""
        return self.lease.leases()

    def reap(self, *, now: float | None = None) -> int:
        """Fail and re-enqueue dead drivers' RUNNING trials (:meth:`DriverLease.reap`)."""
        return self.lease.reap(now=now)

    def _fail(self, trial_id: int, reason: str) -> bool:
        return self.lease.fail(trial_id, reason)

    def _requeue(self, ft: FrozenTrial) -> bool:
        return self.lease.requeue(ft)

    def start_heartbeats(self) -> None:
        self.lease.start()

    def stop_heartbeats(self) -> None:
        self.lease.stop()

    def _running_ids(self) -> list[int]:
        return [op.trial_id_of(t) for t in (*self.live.values(), *self._pending_error.values())]

    def _reaped(self, n: int) -> None:
        self.n_requeued += n

    def stopper(self) -> LeaseStopper:
        """A Tune ``Stopper`` (``RunConfig(stop=...)``) that ends the run when the lease is lost."""
        return LeaseStopper(self)

    def _lease_lost(self, message: str) -> None:
        """The heartbeat kept failing: ask nothing more; the runner stops Tune and the session."""
        with self._lock:
            self.lease_lost = message
            self._stop = True

    # ---- taking the study over --------------------------------------------------------------
    def resync(self) -> dict[str, int]:
        """Join the study: write this driver's lease, reap dead drivers, enqueue references.

        Other live drivers are left alone (several drivers may share a study). RUNNING trials
        of dead drivers (:meth:`reap`) are marked FAIL with a ``fail_reason`` and their
        parameters (or reference schedule) re-enqueued; references not yet in the study are
        enqueued. Returns counts: ``complete``, ``requeued``, ``waiting``.
        """
        with self._lock:
            self.lease.write()
            requeued = self.reap()
            self.n_requeued += requeued
            # references: enqueue the missing ones (re-read right before, so a driver that
            # started a moment earlier is seen; a duplicate that still slips through is
            # skipped when asked, see _duplicate_reference)
            # A reference counts only when COMPLETE or PRUNED, or still to run (WAITING, or RUNNING in a
            # live driver: dead drivers' trials were just reaped): one that FAILed after its
            # retries is enqueued again. Nothing is enqueued once the budget is met (nothing runs).
            self.n_complete = len(self.study.get_trials(deepcopy=False, states=DONE_STATES))
            have = {TRIAL_REFERENCE.get(t) for t in self.study.get_trials(
                deepcopy=False, states=(*DONE_STATES, TrialState.RUNNING, TrialState.WAITING))}
            if not self.budget_reached:
                for label, sched in self.references:
                    if label not in have:
                        self.study.enqueue_trial({}, user_attrs={TRIAL_REFERENCE.key: label, TRIAL_SCHEDULE.key: sched.to_dict()},
                                                 skip_if_exists=False)
            waiting = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            return {"complete": self.n_complete, "requeued": requeued, "waiting": waiting}

    # ---- Tune's searcher interface ------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def stop(self) -> None:
        """Suggest nothing more (Ctrl-C, wall time); running trials finish or are closed."""
        self._stop = True

    @property
    def budget_reached(self) -> bool:
        return self.budget_trials is not None and self.n_complete >= self.budget_trials

    def _count(self) -> tuple[int, int]:
        """Finished (COMPLETE or PRUNED) and RUNNING trials in the whole study, every driver's
        (one query: the cached storage re-reads only unfinished and new trials)."""
        trials = op.storage_of(self.study).get_all_trials(
            op.study_id_of(self.study), deepcopy=False, states=(*DONE_STATES, TrialState.RUNNING))
        complete = sum(1 for t in trials if t.state in DONE_STATES)
        return complete, len(trials) - complete

    def spent_train_flops(self) -> float:
        """Training FLOPs the study's trials spent (every driver's): COMPLETE trials' ``train_flops``
        metric and what PRUNED trials trained before they were stopped, less what the shared-prefix
        cache spared them (``train_flops_saved``: epochs loaded, not trained) and, for a trial MOASHA
        promoted, the epochs its stopped origin had trained (counted there)."""
        total = 0.0
        done = op.storage_of(self.study).get_all_trials(op.study_id_of(self.study), deepcopy=False, states=DONE_STATES)

        def flops(rec: dict[str, Any], key: str) -> float:
            v = rec.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else 0.0

        pruned_spent = {t.number: flops(TRIAL_PRUNED.get(t) or {}, "train_flops") for t in done if t.state == TrialState.PRUNED}
        for t in done:
            rec = (TRIAL_METRICS.get(t) if t.state == TrialState.COMPLETE else TRIAL_PRUNED.get(t)) or {}
            v = flops(rec, "train_flops")
            # spared: epochs the prefix cache gave it, or those its promoted-from trial trained (resumed)
            spared = flops(rec, PREFIX_FLOPS_SAVED) + pruned_spent.get(TRIAL_PROMOTED_FROM.get(t) or -1, 0.0)
            total += v - min(spared, v)
        return total

    @property
    def flops_budget_reached(self) -> bool:
        return self.budget_train_flops is not None and self.spent_train_flops() >= self.budget_train_flops

    # Ray's own annotation says dict | None, yet Searcher.FINISHED (a str) is how a searcher ends a run
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        with self._lock:
            try:
                return self._suggest(trial_id)
            except Exception as exc:
                if self.record_storage_fault(exc):
                    return None if self.live or self._pending_error else Searcher.FINISHED
                raise

    def record_storage_fault(self, exc: BaseException) -> bool:
        """Record a storage fault (read-only database, full disk) and stop asking; False for
        any other error. The runner ends the session with one line naming it."""
        fault = storage_fault(exc)
        if fault is None:
            return False
        if self.storage_error is None:
            self.storage_error = fault
        self._stop = True
        return True

    def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        busy = len(self.live) + len(self._pending_error)
        if self._stop:
            return None if busy else Searcher.FINISHED
        if self.budget_train_flops is not None and self.flops_budget_reached:
            return None if busy else Searcher.FINISHED
        if self.n_failed >= self.max_failures:
            if self.gave_up is None:
                self.gave_up = f"gave up after {self.n_failed} failed trials in this session (the limit is {self.max_failures})"
            return None if busy else Searcher.FINISHED
        if self.budget_trials is not None:
            if time.time() < self._idle_until:
                return None  # the rest of the budget is running; recount shortly
            complete, running = self._count()
            self.n_complete = complete
            if complete >= self.budget_trials:
                return None if busy else Searcher.FINISHED
            if complete + running >= self.budget_trials:
                # the rest of the budget is running (here or in other drivers): wait, a
                # failed or reaped trial is replaced; our own trial ending recounts at once
                self._idle_until = time.time() + IDLE_RECHECK
                return None

        if self.may_ask is not None:
            if busy and time.time() < self._idle_until:
                return None  # the gate was shut a moment ago; a trial ending here reopens the count
            if not self.may_ask():  # one database read: Tune asks on every loop while a worker is free
                if not busy:
                    return Searcher.FINISHED
                self._idle_until = time.time() + IDLE_RECHECK
                return None

        def ask() -> optuna.Trial:
            trial = self._ask()
            TRIAL_DRIVER.set(trial, str(self.driver["token"]))  # first: other drivers' reap reads it
            return trial

        def reject(trial: optuna.Trial, twin: tuple[int, str]) -> None:
            self._fail(op.trial_id_of(trial), f"duplicate schedule: trial {twin[0]} ({twin[1]}) has the same schedule; not trained")

        proposal = propose(ask, self.space, reject=reject, max_repeats=MAX_REPEATS, twin=lambda trial, sched, attrs: self._twin(
            trial, sched, enqueued=bool(op.fixed_params_of(trial)) or TRIAL_REQUEUED_FROM.key in attrs))
        if proposal is None:
            self.gave_up = (f"the sampler proposed {MAX_REPEATS} schedules in a row that the study already has; "
                            "the search space looks exhausted")
            self._stop = True
            return None if busy else Searcher.FINISHED
        trial, label, params, sched, attrs = proposal.trial, proposal.label, proposal.params, proposal.schedule, proposal.attrs
        requeued = self._resume_chain(attrs)
        TRIAL_RAY_TRIAL_ID.set(trial, trial_id)
        if self.seed is not None:
            TRIAL_SEED.set(trial, self.seed)
        if self.versions:
            VERSIONS.set(trial, self.versions)
        self.lease.record_heartbeat(op.trial_id_of(trial))
        self.live[trial_id] = trial
        self.started[trial_id] = time.time()
        return {
            "trial_number": trial.number,
            "params": params,
            "reference": label,
            "schedule": sched.to_dict() if label else None,
            "resume_from": requeued,
        }

    def _twin(self, trial: optuna.Trial, sched: GrowthSchedule, *, enqueued: bool) -> tuple[int, str] | None:
        """Another trial of the study with the same decoded schedule (:func:`~growsearch.search.propose.find_twin`)."""
        return find_twin(self.study, self.space, trial, sched, enqueued=enqueued)

    def _resume_chain(self, attrs: dict[str, Any]) -> list[int]:
        """The trials a re-enqueued trial continues, newest first (``requeued_from`` links):
        the worker resumes from the newest of their folders that holds a checkpoint."""
        chain: list[int] = []
        n = TRIAL_REQUEUED_FROM.get(attrs)
        while isinstance(n, int) and n not in chain and len(chain) < 100:
            chain.append(n)
            try:
                storage = op.storage_of(self.study)
                n = TRIAL_REQUEUED_FROM.get(storage.get_trial(storage.get_trial_id_from_study_id_trial_number(
                    op.study_id_of(self.study), n)))
            except KeyError:
                break
        return chain

    def _ask(self) -> optuna.Trial:
        """``study.ask()``, skipping duplicate reference trials (two drivers that started
        together may both have enqueued one): a reference whose label already has a COMPLETE
        trial, or a RUNNING one asked before it, is marked FAIL (``duplicate reference``)."""
        while True:
            with warnings.catch_warnings():
                # ask-and-tell with storage heartbeats is the point here: the driver records them
                warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
                trial = self.study.ask()
            label = TRIAL_REFERENCE.get(trial)
            if not label:
                return trial
            promoted_from = TRIAL_PROMOTED_FROM.get(trial)
            twin = next((t for t in self.study.get_trials(deepcopy=False, states=(*DONE_STATES, TrialState.RUNNING))
                         if t.number not in (trial.number, promoted_from) and TRIAL_REFERENCE.get(t) == label
                         and (t.state in DONE_STATES or t.number < trial.number)), None)
            if twin is None:
                return trial
            self._fail(op.trial_id_of(trial), f"duplicate reference {label!r}: trial {twin.number} runs it; skipped")

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        with self._lock:
            try:
                self._on_trial_complete(trial_id, result, error)
            except Exception as exc:
                if not self.record_storage_fault(exc) and self.lease_lost is None:
                    raise

    def _on_trial_complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        self._idle_until = 0.0
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        t0 = self.started.pop(trial_id, None)
        if error:
            # the message arrives in the progress callback's on_trial_error right after
            self._pending_error[trial_id] = trial
            return
        if not result or not result.get(FINAL_KEY):
            reason = ("stopped before it finished: its driver's heartbeat kept failing; re-enqueued" if self.lease_lost
                      else "stopped before it finished (interrupt or wall-time budget); re-enqueued")
            ft = op.storage_of(self.study).get_trial(op.trial_id_of(trial))
            if self._fail(op.trial_id_of(trial), reason) and self._requeue(ft):
                self.n_requeued += 1
            return
        payload = json.loads(result.get(PAYLOAD_KEY) or "{}")
        if payload.get("status") != "ok":
            reason = str(payload.get("fail_reason") or payload.get("status") or "failed")
            self._record_failure(trial, reason)
            return
        metrics = payload.get("metrics") or {}
        try:
            values = [float(metrics[name]) for name in self.objectives]
        except (KeyError, TypeError, ValueError):
            self._record_failure(trial, f"metrics lack an objective; need {self.objectives}, got {sorted(metrics)}")
            return
        if not all(math.isfinite(v) for v in values):
            self._record_failure(trial, "nan")
            return
        if op.storage_of(self.study).get_trial(op.trial_id_of(trial)).state.is_finished():
            return  # never tell twice
        for attr in (TRIAL_METRICS, TRIAL_CURVES, TRIAL_NODE, TRIAL_ATTEMPT):  # the payload names them by their keys
            if attr.key in payload:
                attr.set(trial, payload[attr.key])
        if self.constraint_fn is not None:
            cons = self.constraint_fn(metrics)
            TRIAL_CONSTRAINT.set(trial, list(cons.values()))
            for key, val in cons.items():
                trial.set_constraint(key, val)
        try:
            self.study.tell(trial, values)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            return
        self.n_complete += 1
        if t0 is not None:
            self.durations.append(time.time() - t0)
        if self.on_told is not None:
            self.on_told(op.storage_of(self.study).get_trial(op.trial_id_of(trial)))

    def prune(self, trial_id: str, info: dict[str, Any]) -> bool:
        """Record a running trial that a trial scheduler stops as PRUNED, at once (before Tune
        stops its process), with ``info`` (the ``pruned`` attr: rung, reason, partial curves,
        training FLOPs, checkpoint) and its partial ``curves``. A PRUNED trial counts toward the
        trial budget, is on no Pareto front and is never proposed or rerun again.

        Returns:
            False when the trial is not this driver's or is already finished (the caller lets
            it go on), or on a storage fault (recorded in ``storage_error``).
        """
        with self._lock:
            trial = self.live.get(trial_id)
            if trial is None:
                return False
            try:
                if op.storage_of(self.study).get_trial(op.trial_id_of(trial)).state.is_finished():
                    return False
                TRIAL_PRUNED.set(trial, info)
                if isinstance(info.get("curves"), dict):
                    TRIAL_CURVES.set(trial, info["curves"])
                self.study.tell(trial, state=TrialState.PRUNED)
            except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
                return False
            except Exception as exc:
                if self.record_storage_fault(exc):
                    return False
                raise
            self.live.pop(trial_id, None)
            self.started.pop(trial_id, None)
            self._idle_until = 0.0
            self.n_complete += 1
            self.n_pruned += 1
            if self.on_told is not None:
                self.on_told(op.storage_of(self.study).get_trial(op.trial_id_of(trial)))
            return True

    def fail_pending(self, trial_id: str, reason: str) -> None:
        """Finish a trial Tune gave up on (after its retries) with ``reason``."""
        with self._lock:
            trial = self._pending_error.pop(trial_id, None)
            if trial is not None:
                try:
                    self._record_failure(trial, reason)
                except Exception as exc:
                    if not self.record_storage_fault(exc):
                        raise

    def _record_failure(self, trial: optuna.Trial, reason: str) -> None:
        if self._fail(op.trial_id_of(trial), reason[:500]):
            self.n_failed += 1
            self.failures.append((trial.number, reason[:500]))

    def close(self, reason: str) -> int:
        """Fail and re-enqueue every trial still running; flush pending errors. Returns how many."""
        self.stop_heartbeats()
        with self._lock:
            for rid in list(self._pending_error):
                self.fail_pending(rid, "error")
            n = 0
            for rid, trial in list(self.live.items()):
                try:  # mark what can be marked: a faulty storage leaves it to the next run's reap
                    ft = op.storage_of(self.study).get_trial(op.trial_id_of(trial))
                    if self._fail(op.trial_id_of(trial), reason) and self._requeue(ft):
                        n += 1
                except Exception as exc:
                    if not self.record_storage_fault(exc) and self.lease_lost is None:
                        raise  # a lost lease: what cannot be marked is reaped by the next run
                self.live.pop(rid, None)
            self.n_requeued += n
        self.lease.release()
        return n

    # Tune may pickle the searcher for its experiment checkpoint; the study is the state.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm with the experiment; the study in the database is
        # the state, so a pickled copy carries only what identifies the driver.
        return {"driver": dict(self.driver), "objectives": list(self.objectives), "budget_trials": self.budget_trials}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._metric = self._mode = None
        self.live, self._pending_error, self._stop = {}, {}, True
        self.gave_up = self.storage_error = self.lease_lost = None
        self._lock = threading.RLock()
