"""A driver's lease on a study, its heartbeat thread, and the reaper of dead drivers' trials.

Several drivers (``growsearch run`` processes) may run one study at once. Each owns the
study user attr ``driver:<token>`` = ``{host, pid, beat, token}`` (its own key, so drivers
never overwrite each other); every trial it asks carries the user attr ``driver`` = token.
:class:`DriverLease` keeps that lease fresh from a thread, records an Optuna heartbeat for
every trial the driver runs, and reaps dead drivers' RUNNING trials (:meth:`DriverLease.reap`:
FAIL with a ``fail_reason``, then re-enqueued) as it goes. ``close`` marks the lease ``stopped``.

A heartbeat that fails is logged (the first failure, then every tenth); after
``max_failures`` failures in a row the thread stops and calls ``on_lost`` with one line, so
the driver stops too (its running trials re-enqueued) instead of letting its lease go stale
unnoticed while other drivers reap and rerun its live trials.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from growsearch.atomic import pid_alive
from growsearch.search import optuna_private as op
from growsearch.search.attrs import (
    LEASE_PREFIX,
    OPTUNA_FIXED_PARAMS,
    STUDY_LEGACY_LEASE,
    TRIAL_DRIVER,
    TRIAL_FAIL_REASON,
    TRIAL_LINEAGE,
    TRIAL_PROMOTED_FROM,
    TRIAL_REFERENCE,
    TRIAL_REQUEUED_FROM,
    TRIAL_SCHEDULE,
    lease_attr,
)
from growsearch.search.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL

__all__ = ["DriverLease", "LEASE_PREFIX", "driver_alive", "lease_key"]

log = logging.getLogger(__name__)

#: Failed heartbeats in a row after which a driver stops (``execution.heartbeat_max_failures``).
HEARTBEAT_MAX_FAILURES = 10


def lease_key(token: str) -> str:
    """The study user attr holding the lease of the driver with ``token``."""
    return lease_attr(token).key


def driver_alive(lease: dict[str, Any] | None, *, now: float | None = None) -> bool:
    """Whether the driver that wrote ``lease`` (study user attr ``driver:<token>``) still runs.

    A lease marked ``stopped`` (clean close) is dead. Same host: its pid exists and its beat
    is fresh (within the grace period; a stale beat means the pid was reused). Another host:
    its beat is fresh.
    """
    if not lease or lease.get("stopped"):
        return False
    now = time.time() if now is None else now
    fresh = now - float(lease.get("beat", 0)) < GRACE_PERIOD
    if lease.get("host") == socket.gethostname():
        return fresh and pid_alive(int(lease.get("pid", -1)))
    return fresh


class DriverLease:
    """This driver's lease on ``study``, its heartbeats and the reaper (module docstring).

    Args:
        study: the study (its storage is the source of truth).
        lock: the driver's lock; held while reading its trials and while reaping.
        running_ids: the storage ids of the trials this driver runs (called under ``lock``).
        on_reaped: called (under ``lock``) with how many trials a heartbeat's reap re-enqueued.
        on_fault: called with a heartbeat's exception (under ``lock``); the driver records a
            storage fault there (read-only database, full disk) and stops asking.
        on_lost: called once, with one line, when ``max_failures`` heartbeats in a row failed.
        max_failures: failed heartbeats in a row before ``on_lost``.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        lock: threading.RLock,
        running_ids: Callable[[], list[int]] = list,
        on_reaped: Callable[[int], None] = lambda n: None,
        on_fault: Callable[[BaseException], Any] = lambda exc: False,
        on_lost: Callable[[str], None] = lambda msg: None,
        max_failures: int = HEARTBEAT_MAX_FAILURES,
    ) -> None:
        self.study = study
        self.driver: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex[:12]}
        self.lock = lock
        self.running_ids = running_ids
        self.on_reaped = on_reaped
        self.on_fault = on_fault
        self.on_lost = on_lost
        self.max_failures = max_failures
        self.beat_failures = 0  # in this session
        self.beat_failures_in_row = 0
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        """This driver's study user attr (``driver:<token>``)."""
        return lease_key(self.driver["token"])

    def write(self) -> None:
        """Refresh this driver's lease (``beat`` = now)."""
        self.study.set_user_attr(self.key, {**self.driver, "beat": time.time()})

    def leases(self) -> dict[str, dict[str, Any]]:
        """Every driver lease recorded on the study, by token (one query).

        The single study-level ``driver`` attr of older growsearch versions counts too.
        """
        attrs = op.storage_of(self.study).get_study_user_attrs(op.study_id_of(self.study))
        out = {v["token"]: v for k, v in attrs.items()
               if k.startswith(LEASE_PREFIX) and isinstance(v, dict) and v.get("token")}
        legacy = STUDY_LEGACY_LEASE.get(attrs)
        if legacy is not None and legacy.get("token") and legacy["token"] not in out:
            out[legacy["token"]] = legacy
        return out

    # ---- heartbeats ---------------------------------------------------------------------------
    def record_heartbeat(self, trial_id: int) -> None:
        """Record an Optuna heartbeat for one trial (nothing on a storage without heartbeats)."""
        st = op.heartbeat_storage(op.storage_of(self.study))
        if st is not None:
            st.record_heartbeat(trial_id)

    def beat(self) -> None:
        """One heartbeat: refresh the lease, record the running trials' heartbeats, reap."""
        with self.lock:
            ids = list(self.running_ids())
        self.write()
        for tid in ids:
            self.record_heartbeat(tid)
        with self.lock:
            self.on_reaped(self.reap())

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a transient DB error must not kill the driver; retried next beat
                if self._failed(exc):
                    return
            else:
                self.beat_failures_in_row = 0

    def _failed(self, exc: BaseException) -> bool:
        """Count, log and hand on a failed heartbeat; True when the driver must stop."""
        with self.lock:
            self.on_fault(exc)  # a read-only database or a full disk stops the session
        self.beat_failures += 1
        self.beat_failures_in_row += 1
        if self.beat_failures == 1 or self.beat_failures % 10 == 0:
            log.warning("heartbeat of driver %s failed (%d in a row, %d in this session): %s: %s",
                        self.driver["token"], self.beat_failures_in_row, self.beat_failures,
                        type(exc).__name__, (str(exc).splitlines() or [""])[0][:300])
        if self.beat_failures_in_row < self.max_failures:
            return False
        self.lost = (f"the driver's heartbeat failed {self.beat_failures_in_row} times in a row "
                     f"(execution.heartbeat_max_failures is {self.max_failures}; last: {type(exc).__name__}: "
                     f"{(str(exc).splitlines() or [''])[0][:200]}), so its lease would go stale and other drivers "
                     "would rerun its trials")
        self.on_lost(self.lost)
        return True

    def start(self) -> None:
        """Start the heartbeat thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="growsearch-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat thread (waits up to 5 s for it)."""
        self._stop.set()
        if self._thread is not None:
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=5)
            self._thread = None

    def release(self) -> None:
        """Mark the lease ``stopped`` (best effort: a faulty storage leaves it to go stale)."""
        try:
            self.study.set_user_attr(self.key, {**self.driver, "beat": 0, "stopped": True, "ended": time.time()})
        except Exception:  # noqa: BLE001 - best effort, as the docstring says
            pass

    # ---- reaping ------------------------------------------------------------------------------
    def reap(self, *, now: float | None = None) -> int:
        """Fail the RUNNING trials whose driver is dead and re-enqueue them; returns how many were re-enqueued.

        A trial's driver is its user attr ``driver`` (a token) and that token's lease
        (:func:`driver_alive`). A trial with no token or no lease (asked by hand, an older
        growsearch) is dead when its Optuna heartbeat is older than the grace period, or it has
        none and started longer than the grace period ago. This driver's own trials are alive.
        Of several drivers reaping the same trial, only the one whose FAIL lands re-enqueues it.
        """
        now = time.time() if now is None else now
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return 0
        leases = self.leases()
        ages: dict[int, float] | None = None
        requeued = 0
        for ft in running:
            token = TRIAL_DRIVER.get(ft)
            if token == self.driver["token"]:
                continue
            lease = leases.get(token) if token else None
            if lease is not None:
                if driver_alive(lease, now=now):
                    continue
                who = f"{lease.get('host')}:{lease.get('pid')}"
            else:
                if ages is None:
                    rdb = op.rdb_of(self.study)
                    ages = {} if rdb is None else op.heartbeat_ages(rdb, [op.trial_id_of(t) for t in running])
                age = ages.get(op.trial_id_of(ft))
                if age is None and ft.datetime_start is not None:
                    age = (datetime.now() - ft.datetime_start).total_seconds()
                if age is None or age < GRACE_PERIOD:
                    continue
                who = "unknown, no heartbeat for " + f"{age:.0f} s"
            reason = f"interrupted: the driver ({who}) stopped before the trial finished; re-enqueued"
            if self.fail(op.trial_id_of(ft), reason) and self.requeue(ft):
                requeued += 1
        return requeued

    def fail(self, trial_id: int, reason: str) -> bool:
        """Mark a RUNNING (or WAITING) trial FAIL with ``reason``; False if it was finished.

        On an RDB storage this is a compare-and-swap (:func:`optuna_private.fail_trial`): of
        two processes failing the same trial exactly one gets True.
        """
        storage = op.storage_of(self.study)
        rdb = op.rdb_of(storage)
        try:
            if rdb is None:
                if storage.get_trial(trial_id).state.is_finished():
                    return False
                storage.set_trial_user_attr(trial_id, TRIAL_FAIL_REASON.key, reason)
                return bool(storage.set_trial_state_values(trial_id, state=TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return op.fail_trial(rdb, trial_id, TRIAL_FAIL_REASON.key, reason)

    def requeue(self, ft: FrozenTrial) -> bool:
        """Enqueue the rerun of the interrupted trial ``ft``.

        What reruns is the schedule it was proposed: a reference's, or its parameters once the
        proposal was complete (the ``schedule`` user attr is written after the last
        parameter); an enqueued trial (a rerun, a promotion, a PBG child) keeps the parameters
        it was enqueued with even when its driver died while asking. A trial cut off before its
        proposal was complete (between ask and the last parameter) has nothing to rerun: a
        fresh ask replaces it, so a half-sampled schedule is never fixed for the sampler.
        """
        attrs = ft.user_attrs
        keep: dict[str, Any] = {k: attrs[k] for k in (TRIAL_REFERENCE.key, TRIAL_SCHEDULE.key) if k in attrs and TRIAL_REFERENCE.get(attrs)}
        for attr in (TRIAL_LINEAGE, TRIAL_PROMOTED_FROM):  # a PBG child stays one; a promoted trial stays promoted
            if attr.get(attrs) is not None:
                keep[attr.key] = attrs[attr.key]
        fixed = ft.system_attrs.get(OPTUNA_FIXED_PARAMS)
        if TRIAL_SCHEDULE.key in attrs and not TRIAL_REFERENCE.get(attrs):
            params = dict(ft.params)
        elif isinstance(fixed, dict):
            params = dict(fixed)
        else:
            params = {}
        if not params and not keep:
            return False
        self.study.enqueue_trial(params, user_attrs={**keep, TRIAL_REQUEUED_FROM.key: ft.number}, skip_if_exists=False)
        return True
