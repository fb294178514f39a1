"""Progress of a running study on stderr, as a Ray Tune callback.

One line per event (trial started with its schedule, complete, restarted, failed). Each
trial reports after every epoch (:func:`growsearch.search.trainable.run_trial`), so the
driver knows each running trial's epochs done and last dev EER. On a terminal
(:class:`growsearch.search.console.Console` with ``live``) these are a bar and one line per
running trial, redrawn in place; in a pipe a status line at most every ``every`` seconds::

    [growsearch] 3/8 complete, 2 running, 1 failed | Pareto front 2 | best dev EER 0.1234 | ETA 1m20s | #4 3/6 epochs EER 0.3125; #5 1/6 epochs
    [growsearch] trial #4 epoch 2 (3/6 epochs): dev EER 0.3125          (--verbose)

The ETA comes from measured trial times (mean COMPLETE trial wall time x the rounds of
trials left, capped by the wall-time budget); there is none until a trial has finished.
Epochs are numbered from 0, as in schedules and ``metrics.json``; ``k/n epochs`` counts.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import IO, Any

from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback

from growsearch.search.attrs import TRIAL_FAIL_REASON, TRIAL_METRICS, TRIAL_PRUNED
from growsearch.search.searcher import FINAL_KEY, StudySearcher
from growsearch.vocabulary import EER

__all__ = ["ProgressCallback", "format_duration", "last_error_line", "system_kill_reason"]


def format_duration(s: float | None) -> str:
    """``83`` -> ``1m23s``; ``None`` -> ``?``."""
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(max(0.0, s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def last_error_line(trial: Any) -> str:
    """Why a Tune trial errored, in one line: a worker the system killed (out of memory,
    SIGKILL) is named as such (:func:`system_kill_reason`), else the last meaningful line
    of the trial's error file (``error``: none recorded)."""
    path = getattr(trial, "error_file", None)
    if not path:
        return "error"
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "error"
    killed = system_kill_reason(text)
    if killed is not None:
        return killed
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(("File ", "^", "~")):
            return f"error: {ln[:300]}"
    return "error"


#: Ray's exceptions for a worker process that died under a task or actor.
_DIED = ("ActorDiedError", "WorkerCrashedError", "ActorUnavailableError", "RayActorError", "worker process has died")


def system_kill_reason(text: str) -> str | None:
    """The reason for a trial whose worker the system killed, from the text of Ray's error
    (an error file, or ``str``/traceback of the exception), else None.

    ``OutOfMemoryError`` (Ray's memory monitor killed the worker) gives ``out of memory:
    ...``; a worker process that died (``ActorDiedError``, ``WorkerCrashedError``: SIGKILL by
    the kernel's OOM killer or anyone, a crash) gives ``worker process has died ...`` with
    Ray's exit detail.
    """
    if "OutOfMemoryError" in text:
        at = text.rfind("OutOfMemoryError:")
        first = text[at + len("OutOfMemoryError:"):].strip().splitlines()[0] if at >= 0 else ""
        return f"out of memory: Ray's memory monitor killed the trial's worker process ({first[:200] or 'OutOfMemoryError'})"
    if any(m in text for m in _DIED):
        detail = re.search(r"Worker exit detail: ([^\n]*?)(?:\. |\n|$)", text)
        why = f": {detail.group(1).strip()[:200]}" if detail else ""
        return f"worker process has died (killed by the system: out of memory, SIGKILL, or a crash){why}"
    return None


class ProgressCallback(Callback):
    """Prints study progress and hands Tune's trial errors (with their message) to the searcher.

    Args:
        searcher: the study's searcher (its counters and study are read, never written here,
            except :meth:`StudySearcher.fail_pending` on errors).
        concurrency: trials that can run at once (for the ETA).
        wall_time: the session's wall-time budget in seconds (for the ETA), or ``None``.
        stream: where lines go (default stderr).
        every: seconds between status lines.
    """

    def __init__(self, searcher: StudySearcher, *, concurrency: int = 1, wall_time: float | None = None,
                 stream: IO[str] | None = None, every: float = 10.0, epochs: int | None = None,
                 console: Any = None) -> None:
        self.searcher = searcher
        self.epochs = epochs
        self.console = console  # a growsearch.search.console.Console: live region, verbosity
        self.running: dict[str, dict[str, Any]] = {}  # Tune trial id -> number, schedule, epochs done, last EER
        self.concurrency = max(1, concurrency)
        self.wall_time = wall_time
        self.stream = stream or sys.stderr
        self.every = every
        self.t0 = time.time()
        self._last = self.t0  # the first status line comes after ``every`` seconds, not before any trial started
        self._last_line = ""
        self.front_size = 0
        self.best_eer: float | None = None
        self.flops_total = 0.0
        self.flops_saved = 0.0
        self.epochs_reused = 0
        searcher.on_told = self._told

    # ---- state ------------------------------------------------------------------------------
    def _told(self, ft: FrozenTrial) -> None:
        study = self.searcher.study
        try:
            self.front_size = len(study.best_trials) if len(study.directions) > 1 else 1
        except Exception:  # noqa: BLE001 - a progress line must never stop the search
            pass
        m = TRIAL_METRICS.get(ft) or {}
        eer = m.get(EER)
        if isinstance(eer, int | float) and (self.best_eer is None or eer < self.best_eer):
            self.best_eer = float(eer)
        self.flops_total += float(m.get("train_flops") or 0.0)
        self.flops_saved += float(m.get("train_flops_saved") or 0.0)
        self.epochs_reused += int(m.get("prefix_epochs_reused") or 0)

    def load_existing(self) -> None:
        """Initialise the front size, best EER and reuse totals from the study's COMPLETE trials."""
        for ft in self.searcher.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            m = TRIAL_METRICS.get(ft) or {}
            eer = m.get(EER)
            if isinstance(eer, int | float) and (self.best_eer is None or eer < self.best_eer):
                self.best_eer = float(eer)
        try:
            study = self.searcher.study
            self.front_size = len(study.best_trials) if len(study.directions) > 1 else int(bool(study.trials))
        except Exception:  # noqa: BLE001 - a progress line must never stop the search
            self.front_size = 0

    def eta(self) -> float | None:
        """Seconds left from measured trial times; ``None`` until a trial has finished."""
        s = self.searcher
        rem_wall = None if self.wall_time is None else max(0.0, self.wall_time - (time.time() - self.t0))
        if s.budget_trials is None:
            return rem_wall if s.durations else None
        remaining = max(0, s.budget_trials - s.n_complete)
        if remaining == 0:
            return 0.0
        if not s.durations:
            return None
        mean = sum(s.durations) / len(s.durations)
        eta = mean * -(-remaining // self.concurrency)
        return eta if rem_wall is None else min(eta, rem_wall)

    def status_line(self) -> str:
        s = self.searcher
        budget = f"/{s.budget_trials}" if s.budget_trials is not None else ""
        running = len(self.running)  # trials Tune has started; the searcher's other live trials wait for a worker
        waiting = max(0, len(s.live) - running)
        pruned = getattr(s, "n_pruned", 0)  # this session's trials a scheduler stopped (counted in n_complete)
        done = f"{s.n_complete}{budget} finished ({pruned} stopped early)" if pruned else f"{s.n_complete}{budget} complete"
        parts = [f"{done}, {running} running" + (f", {waiting} starting" if waiting else "")
                 + f", {s.n_failed} failed"]
        parts.append(f"Pareto front {self.front_size}")
        parts.append("best dev EER " + ("-" if self.best_eer is None else f"{self.best_eer:.4f}"))
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        if self.flops_saved > 0:
            frac = self.flops_saved / max(self.flops_total, 1e-12)
            parts.append(f"prefix reuse saved {self.epochs_reused} epochs ({100 * frac:.0f}% of training FLOPs)")
        if self.running and not self._live():
            parts.append("; ".join(self._trial_brief(r) for r in self._running()))
        return "[growsearch] " + " | ".join(parts)

    # ---- running trials ---------------------------------------------------------------------
    def _live(self) -> bool:
        return bool(getattr(self.console, "live", False))

    def _running(self) -> list[dict[str, Any]]:
        return sorted(self.running.values(), key=lambda r: (r["number"] is None, r["number"] or 0))

    def _epochs_text(self, r: dict[str, Any]) -> str:
        total = f"/{self.epochs}" if self.epochs else ""
        return f"{r['done']}{total} epochs"

    def _trial_brief(self, r: dict[str, Any]) -> str:
        eer = "" if r["eer"] is None else f" EER {r['eer']:.4f}"
        return f"#{r['number']} {self._epochs_text(r)}{eer}"

    def region_lines(self) -> list[str]:
        """The live region: a bar over the budget and one line per running trial."""
        from growsearch.search.console import bar

        s = self.searcher
        head = self.status_line().replace("[growsearch] ", "", 1)
        lines = [f"{bar(s.n_complete, s.budget_trials)} {head}"]
        for r in self._running():
            eer = "-" if r["eer"] is None else f"{r['eer']:.4f}"
            lines.append(f"  #{r['number']:<4} {bar(r['done'], self.epochs, 10)} {self._epochs_text(r):>10}  "
                         f"dev EER {eer}  {r['schedule']}")
        return lines

    def _refresh(self) -> None:
        if self._live():
            self.console.region(self.region_lines())

    def _verbose(self, text: str) -> None:
        if self.console is not None and hasattr(self.console, "line"):
            self.console.line(text, level=2)

    def _schedule_text(self, cfg: dict[str, Any]) -> str:
        """The trial's schedule in one short line: ``+8 gru1@1 random; -all gru1@3``."""
        try:
            if cfg.get("schedule") is not None:
                from growsearch.schedule import GrowthSchedule

                sched = GrowthSchedule.from_dict(cfg["schedule"])
            else:
                sched = self.searcher.space.decode(cfg.get("params") or {})
        except Exception:  # noqa: BLE001 - an undecodable trial shows as "?" in the progress line
            return "?"
        if not sched.events:
            return "no growth"
        out = []
        for e in sched.events:
            if e.action == "grow":
                out.append(f"+{e.neurons} {e.point}@{e.epoch} {e.init}" + (" frozen" if e.freeze == "new_only" else ""))
            else:
                out.append(f"-{'all' if e.neurons is None else e.neurons} {e.point}@{e.epoch}")
        return "; ".join(out)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _status(self, force: bool = False) -> None:
        if self._live():
            self._refresh()
            return
        now = time.time()
        line = self.status_line()
        if force or (now - self._last >= self.every and line != self._last_line):
            self._print(line)
            self._last, self._last_line = now, line

    # ---- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        cfg = trial.config or {}
        label = cfg.get("reference")
        sched = self._schedule_text(cfg)
        what = f"reference {label!r}: {sched}" if label else sched
        self.running[trial.trial_id] = {"number": cfg.get("trial_number"), "schedule": sched, "done": 0, "eer": None}
        self._print(f"[growsearch] trial #{cfg.get('trial_number')} started: {what}")
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get(FINAL_KEY) or "epoch" not in result:
            return
        r = self.running.setdefault(trial.trial_id, {"number": (trial.config or {}).get("trial_number"),
                                                     "schedule": self._schedule_text(trial.config or {}), "done": 0, "eer": None})
        r["done"] = int(result["epoch"]) + 1
        if isinstance(result.get(EER), int | float):
            r["eer"] = float(result[EER])
        eer = "" if result.get(EER) is None else f": dev EER {result[EER]:.4f}"
        self._verbose(f"[growsearch] trial #{r['number']} epoch {int(result['epoch'])} ({self._epochs_text(r)}){eer}")
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.pop(trial.trial_id, None)
        n = (trial.config or {}).get("trial_number")
        ft = next((t for t in self.searcher.study.get_trials(deepcopy=False) if t.number == n), None)
        if ft is not None and ft.state == TrialState.COMPLETE:
            vals = ", ".join(f"{k} {v:.4g}" for k, v in zip(self.searcher.objectives, ft.values or ()))
            self._print(f"[growsearch] trial #{n} complete: {vals}")
        elif ft is not None and ft.state == TrialState.FAIL:
            self._print(f"[growsearch] trial #{n} failed: {TRIAL_FAIL_REASON.get(ft) or '?'}")
        elif ft is not None and ft.state == TrialState.PRUNED:
            why = (TRIAL_PRUNED.get(ft) or {}).get("reason") or "?"
            self._print(f"[growsearch] trial #{n} stopped early (PRUNED): {why}")
        self._status(force=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        n = (trial.config or {}).get("trial_number")
        self._print(f"[growsearch] trial #{n} crashed ({last_error_line(trial)}); restarting from its checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.pop(trial.trial_id, None)
        n = (trial.config or {}).get("trial_number")
        reason = last_error_line(trial)
        self.searcher.fail_pending(trial.trial_id, reason)
        self._print(f"[growsearch] trial #{n} failed after its retries: {reason}")
        self._status(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live():
            self.console.close()
            self._print(self.status_line())

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._live():
            now = time.time()
            if now - self._last >= 1.0:  # the ETA and counters move: redraw once a second at most
                self._refresh()
                self._last = now
            return
        self._status()
