"""A Ray Tune searcher whose only state is the Optuna study in the database.

Ray's stock ``OptunaSearch`` keeps its own pickled copy of the study and drifts from the
database after a crash (trials stuck RUNNING, results dropped, configs run twice). This
searcher keeps nothing that matters in memory:

Life cycle (driven by Tune, one driver at a time per study)::

    s = StudySearcher(study, space, objectives=[...], budget_trials=8)
    s.resync()            # take the study over: RUNNING trials of a dead driver -> FAIL
                          # (fail_reason) and re-enqueued; references enqueued once
    s.suggest(ray_id)     # study.ask() + space.define_by_run(trial) -> config for the trainable
    s.on_trial_complete(ray_id, result, error)   # study.tell(values) or FAIL + fail_reason
    s.close(reason)       # trials still running (Ctrl-C, wall time) -> FAIL + re-enqueued

- The budget counts COMPLETE trials in the study; failed trials are replaced.
- A trial is never told twice: the stored state is checked before every tell.
- Only a result carrying ``final: True`` (sent by the trainable when ``train()`` returned)
  completes a trial; a trial stopped early (time budget, interrupt) never pollutes the front.
- Heartbeats: a thread records an Optuna heartbeat for every running trial and a study-level
  ``driver`` lease (host, pid, time) used to tell a live driver from a dead one.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from growsearch.errors import ConfigError
from growsearch.schedule import GrowthSchedule
from growsearch.search.space import SearchSpace
from growsearch.search.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL

__all__ = ["StudySearcher", "driver_alive", "FINAL_KEY", "PAYLOAD_KEY"]

#: Result key the trainable sets on its last report (only such results complete a trial).
FINAL_KEY = "gs_final"
#: Result key holding the JSON payload of the last report (metrics, curves, node, ...).
PAYLOAD_KEY = "gs_payload"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_alive(lease: dict[str, Any] | None, *, now: float | None = None) -> bool:
    """Whether the driver that wrote ``lease`` (study user attr ``driver``) still runs.

    Same host: its pid is checked. Another host: its lease is fresh (within the grace period).
    """
    if not lease:
        return False
    now = time.time() if now is None else now
    fresh = now - float(lease.get("beat", 0)) < GRACE_PERIOD
    if lease.get("host") == socket.gethostname():
        return fresh and _pid_alive(int(lease.get("pid", -1)))
    return fresh


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
    ) -> None:
        super().__init__(metric=None, mode=None)
        self.study = study
        self.space = space
        self.objectives = list(objectives)
        self.budget_trials = budget_trials
        self.references = list(references)
        self.constraint_fn = constraint_fn
        self.seed = seed
        self.versions = dict(versions or {})
        self.max_failures = max_failures if max_failures is not None else max(3, budget_trials or 3)
        self.driver = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex[:12]}
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
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self.on_told: Callable[[optuna.trial.FrozenTrial], None] | None = None

    # ---- driver lease and heartbeats -----------------------------------------------------
    def _write_lease(self) -> None:
        self.study.set_user_attr("driver", {**self.driver, "beat": time.time()})

    def _heartbeat_loop(self) -> None:
        storage = self.study._storage
        while not self._hb_stop.wait(HEARTBEAT_INTERVAL):
            try:
                with self._lock:
                    ids = [t._trial_id for t in self.live.values()]
                self._write_lease()
                if isinstance(storage, optuna.storages._heartbeat.BaseHeartbeat) and storage.get_heartbeat_interval():
                    for tid in ids:
                        storage.record_heartbeat(tid)
            except Exception:  # a transient DB error must not kill the driver; retried next beat
                pass

    def start_heartbeats(self) -> None:
        if self._hb_thread is None:
            self._hb_thread = threading.Thread(target=self._heartbeat_loop, name="growsearch-heartbeat", daemon=True)
            self._hb_thread.start()

    def stop_heartbeats(self) -> None:
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(timeout=5)
            self._hb_thread = None

    # ---- taking the study over --------------------------------------------------------------
    def resync(self) -> dict[str, int]:
        """Take the study over from a previous (dead) driver and count COMPLETE trials.

        RUNNING trials left by a dead driver are marked FAIL with a ``fail_reason`` and their
        parameters (or reference schedule) re-enqueued; references not yet in the study are
        enqueued. Returns counts: ``complete``, ``requeued``, ``waiting``.

        Raises:
            ConfigError: another driver is alive on this study.
        """
        lease = self.study.user_attrs.get("driver")
        if lease and lease.get("token") != self.driver["token"] and driver_alive(lease):
            raise ConfigError(
                f"study {self.study.study_name!r} is being run by another growsearch (pid {lease.get('pid')} "
                f"on {lease.get('host')}); stop it first, or wait {GRACE_PERIOD} s after it died"
            )
        self._write_lease()
        who = f"{lease.get('host')}:{lease.get('pid')}" if lease else "an earlier driver"
        requeued = 0
        for ft in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            reason = f"interrupted: the driver ({who}) stopped before the trial finished; re-enqueued"
            if self._fail(ft._trial_id, reason):
                self._requeue(ft.params, ft.user_attrs, ft.number)
                requeued += 1
        self.n_requeued += requeued
        # references: enqueue the missing ones
        have = {t.user_attrs.get("reference") for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("reference")}
        for label, sched in self.references:
            if label not in have:
                self.study.enqueue_trial({}, user_attrs={"reference": label, "schedule": sched.to_dict()}, skip_if_exists=False)
        self.n_complete = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        waiting = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return {"complete": self.n_complete, "requeued": requeued, "waiting": waiting}

    def _fail(self, trial_id: int, reason: str) -> bool:
        storage = self.study._storage
        try:
            if storage.get_trial(trial_id).state.is_finished():
                return False
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            return bool(storage.set_trial_state_values(trial_id, state=TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def _requeue(self, params: dict[str, Any], attrs: dict[str, Any], number: int) -> None:
        keep = {k: attrs[k] for k in ("reference", "schedule") if k in attrs and attrs.get("reference")}
        self.study.enqueue_trial(dict(params), user_attrs={**keep, "requeued_from": number}, skip_if_exists=False)

    # ---- Tune's searcher interface ------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def stop(self) -> None:
        """Suggest nothing more (Ctrl-C, wall time); running trials finish or are closed."""
        self._stop = True

    @property
    def budget_reached(self) -> bool:
        return self.budget_trials is not None and self.n_complete >= self.budget_trials

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        with self._lock:
            busy = len(self.live) + len(self._pending_error)
            if self._stop:
                return None if busy else Searcher.FINISHED
            if self.budget_trials is not None and self.n_complete + busy >= self.budget_trials:
                return None if busy else Searcher.FINISHED
            if self.n_failed >= self.max_failures:
                return None if busy else Searcher.FINISHED
            with warnings.catch_warnings():
                # ask-and-tell with storage heartbeats is the point here: the driver records them
                warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
                trial = self.study.ask()
            attrs = trial.user_attrs
            if attrs.get("reference") and attrs.get("schedule") is not None:
                label, params, sched = attrs["reference"], {}, GrowthSchedule.from_dict(attrs["schedule"])
            else:
                label = None
                self.space.define_by_run(trial)
                params = dict(trial.params)
                sched = self.space.decode(params)
            trial.set_user_attr("schedule", sched.to_dict())
            trial.set_user_attr("ray_trial_id", trial_id)
            trial.set_user_attr("driver", self.driver["token"])
            if self.seed is not None:
                trial.set_user_attr("seed", self.seed)
            if self.versions:
                trial.set_user_attr("versions", self.versions)
            st = self.study._storage
            if isinstance(st, optuna.storages._heartbeat.BaseHeartbeat) and st.get_heartbeat_interval():
                st.record_heartbeat(trial._trial_id)
            self.live[trial_id] = trial
            self.started[trial_id] = time.time()
            return {
                "trial_number": trial.number,
                "params": params,
                "reference": label,
                "schedule": sched.to_dict() if label else None,
            }

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        with self._lock:
            trial = self.live.pop(trial_id, None)
            if trial is None:
                return
            t0 = self.started.pop(trial_id, None)
            if error:
                # the message arrives in the progress callback's on_trial_error right after
                self._pending_error[trial_id] = trial
                return
            if not result or not result.get(FINAL_KEY):
                reason = "stopped before it finished (interrupt or wall-time budget); re-enqueued"
                ft = self.study._storage.get_trial(trial._trial_id)
                if self._fail(trial._trial_id, reason):
                    self._requeue(ft.params, ft.user_attrs, ft.number)
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
            if self.study._storage.get_trial(trial._trial_id).state.is_finished():
                return  # never tell twice
            for key in ("metrics", "curves", "node", "attempt"):
                if key in payload:
                    trial.set_user_attr(key, payload[key])
            if self.constraint_fn is not None:
                cons = self.constraint_fn(metrics)
                trial.set_user_attr("constraint", list(cons.values()))
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
                self.on_told(self.study._storage.get_trial(trial._trial_id))

    def fail_pending(self, trial_id: str, reason: str) -> None:
        """Finish a trial Tune gave up on (after its retries) with ``reason``."""
        with self._lock:
            trial = self._pending_error.pop(trial_id, None)
            if trial is not None:
                self._record_failure(trial, reason)

    def _record_failure(self, trial: optuna.Trial, reason: str) -> None:
        if self._fail(trial._trial_id, reason[:500]):
            self.n_failed += 1
            self.failures.append((trial.number, reason[:500]))

    def close(self, reason: str) -> int:
        """Fail and re-enqueue every trial still running; flush pending errors. Returns how many."""
        with self._lock:
            for rid in list(self._pending_error):
                self.fail_pending(rid, "error")
            n = 0
            for rid, trial in list(self.live.items()):
                ft = self.study._storage.get_trial(trial._trial_id)
                if self._fail(trial._trial_id, reason):
                    self._requeue(ft.params, ft.user_attrs, ft.number)
                    n += 1
                self.live.pop(rid, None)
            self.n_requeued += n
        self.stop_heartbeats()
        try:
            attrs = self.study.user_attrs.get("driver") or {}
            if attrs.get("token") == self.driver["token"]:
                self.study.set_user_attr("driver", {**attrs, "beat": 0, "ended": time.time()})
        except Exception:
            pass
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
        self._lock = threading.RLock()
