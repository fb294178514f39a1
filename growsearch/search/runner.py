"""Running (or resuming) a study: Optuna study in the database + Ray Tune trials.

:func:`run_study` is what ``growsearch run`` calls::

    cfg = load_study_config("studies/quickstart.yaml")
    summary = run_study(cfg)          # starts Ray locally (or joins execution.address)

Steps: open the storage, create or load the study (a different config under the same name
is refused: its ``config_hash`` differs), record the study user attrs (``config``,
``config_hash``, ``objectives``, ``versions``), join the study (:meth:`StudySearcher.resync`:
this driver's lease; trials of dead drivers re-enqueued; other live drivers of the same study
are left to run alongside), then run Ray Tune with the :class:`StudySearcher` until the
study's budget of finished trials (COMPLETE, and PRUNED when the study's ``scheduler`` stops
trials early, see :func:`make_scheduler`; counted over all drivers), its training-FLOPs
budget or the wall time is reached.
Trials still running when the run stops (Ctrl-C, wall time) are marked FAIL with a reason
and re-enqueued, so running the same command again resumes the study.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from growsearch.errors import ConfigError, GrowsearchError, RunFailed
from growsearch.metrics.flops_definition import mark_flops_definition
from growsearch.paths import child_path
from growsearch.redact import redact_url
from growsearch.report.reuse import summarise
from growsearch.search.attrs import (
    STUDY_CONFIG,
    STUDY_CONFIG_HASH,
    STUDY_PREFIX_REUSE,
    STUDY_TRAIN_CONFIG_HASH,
    TRIAL_METRICS,
    VERSIONS,
    set_study_objectives,
)
from growsearch.search.growth_sampler import GrowthAwareSampler
from growsearch.search.raywatch import RayGuard, start_local_ray
from growsearch.search.resources import check_data, check_trial_fits, preflight, refuse_other_config, study_data_config
from growsearch.search.sampling import StudyGridSampler, TrialSeededSampler
from growsearch.search.searcher import StudySearcher
from growsearch.search.space import SearchSpace
from growsearch.search.storage import open_storage, storage_fault
from growsearch.search.study import SamplerConfig, StudyConfig, check_scheduler
from growsearch.search.trainable import (
    TrialContext,
    TrialFn,
    package_versions,
    run_trial,
    study_identity,
    study_trials_dir,
)
from growsearch.vocabulary import SAMPLERS

__all__ = ["RunSummary", "make_sampler", "make_scheduler", "open_study", "run_study", "sampler_for"]


@dataclass
class RunSummary:
    """What a :func:`run_study` session did.

    Attributes:
        study_name / storage: where the study lives (storage URL redacted).
        complete: COMPLETE trials in the study at the end.
        failed_session: trials that failed in this session, with reasons.
        requeued: trials re-enqueued (dead driver, interrupt, wall time).
        interrupted: stopped by Ctrl-C.
        front_size: Pareto-front size at the end.
        wall_s: seconds this session took (Ray start-up included).
        train_flops / train_flops_saved: training compute spent and saved by prefix reuse
            over all COMPLETE trials.
        pruned: PRUNED trials in the study at the end (stopped early by its scheduler).
    """

    study_name: str
    storage: str
    complete: int = 0
    failed_session: list[tuple[int, str]] = field(default_factory=list)
    requeued: int = 0
    interrupted: bool = False
    budget_reached: bool = False
    front_size: int = 0
    wall_s: float = 0.0
    train_flops: float = 0.0
    train_flops_saved: float = 0.0
    epochs_reused: int = 0
    pruned: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study_name,
            "storage": self.storage,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed_this_session": [{"trial": n, "reason": r} for n, r in self.failed_session],
            "requeued": self.requeued,
            "interrupted": self.interrupted,
            "budget_reached": self.budget_reached,
            "pareto_front_size": self.front_size,
            "wall_s": round(self.wall_s, 2),
            "train_flops": self.train_flops,
            "train_flops_saved": self.train_flops_saved,
            "prefix_epochs_reused": self.epochs_reused,
        }


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    """The sampler the study config names, reseeded for every trial from the seed and the
    trial's number (:class:`~growsearch.search.sampling.TrialSeededSampler`), so that no run
    or driver replays the proposals of another.

    Constraints reach the samplers through ``trial.set_constraint`` (Optuna 5 deprecates
    ``constraints_func``); the searcher records them before each tell.
    """
    return sampler_for(cfg.sampler, cfg.space, cfg.budget.trials)


def sampler_for(s: SamplerConfig, space: SearchSpace, budget_trials: int | None) -> optuna.samplers.BaseSampler:
    """:func:`make_sampler` from its parts (the simulator builds a study's sampler this way)."""
    pop = s.population_size or max(4, min(50, (budget_trials or 50) // 3))
    inner: optuna.samplers.BaseSampler
    if s.name == "nsga2":
        inner = optuna.samplers.NSGAIISampler(population_size=pop, seed=s.seed)
    elif s.name == "nsga3":
        inner = optuna.samplers.NSGAIIISampler(population_size=pop, seed=s.seed)
    elif s.name == "tpe":
        inner = optuna.samplers.TPESampler(seed=s.seed, multivariate=True, n_startup_trials=min(10, max(2, pop)))
    elif s.name == "gp":
        inner = optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=min(10, max(2, pop)))
    elif s.name == "random":
        inner = optuna.samplers.RandomSampler(seed=s.seed)
    elif s.name == "grid":
        inner = StudyGridSampler(space.grid(), seed=s.seed)
    elif s.name == "growth":
        inner = GrowthAwareSampler(space.grid(sampler="growth"), seed=s.seed, n_startup=min(10, max(2, pop)))
    else:
        raise ConfigError(f"sampler.name: unknown sampler {s.name!r}; valid samplers: {', '.join(SAMPLERS)}")
    return TrialSeededSampler(inner, s.seed)


def make_scheduler(cfg: StudyConfig, searcher: StudySearcher, trials_dir: Path, train: Any) -> Any:
    """The Tune trial scheduler the study's ``scheduler`` names: ``None`` for ``none`` (Tune's
    FIFO), a :class:`~growsearch.search.moasha_tune.MoashaScheduler` for ``moasha``, a
    :class:`~growsearch.search.pbg_tune.PbgScheduler` for ``pbg`` (which also gates the
    searcher's proposals and first enqueues any child a killed driver left out). Costs come
    from :func:`growsearch.train.dryrun.dry_run` of each schedule (``train``: the workers'
    training config, so the corpus size is known); stopped trials record their checkpoint
    under ``trials_dir``."""
    from growsearch.search.schedulers import MoashaConfig, PbgConfig

    if not isinstance(cfg.scheduler, MoashaConfig | PbgConfig):
        return None
    from growsearch.schedule import GrowthSchedule
    from growsearch.search.moasha_tune import MoashaScheduler
    from growsearch.search.pbg_tune import PbgScheduler
    from growsearch.search.trainable import trial_dir
    from growsearch.train.dryrun import dry_run
    from growsearch.train.state import CHECKPOINT_DIR, STATE_FILE

    def costs_of(schedule: dict[str, Any]) -> dict[str, float]:
        report = dry_run(train, GrowthSchedule.from_dict(schedule), schedule_source="trial schedule")
        last = report["epochs"][-1]
        return {"params": float(last["params"]), "flops": float(last["flops"]),
                "train_flops": float(report["train_flops"] if report["train_flops"] is not None else math.nan)}

    def checkpoint_of(n: int) -> Path:
        return trial_dir(trials_dir, n) / CHECKPOINT_DIR / STATE_FILE

    if isinstance(cfg.scheduler, PbgConfig):
        pbg = PbgScheduler(cfg.scheduler, searcher, space=cfg.space, epochs=cfg.epochs, objectives=cfg.objectives,
                           costs_of=costs_of, seed=cfg.sampler.seed, budget_trials=cfg.budget.trials,
                           checkpoint_of=checkpoint_of)
        pbg.repair()  # a child its killed driver had not enqueued yet
        searcher.may_ask = pbg.may_ask
        return pbg
    return MoashaScheduler(cfg.scheduler, searcher, epochs=cfg.epochs, objectives=cfg.objectives, costs_of=costs_of,
                           checkpoint_of=checkpoint_of)


def open_study(cfg: StudyConfig, storage_url: str, *, versions: dict[str, str] | None = None) -> optuna.Study:
    """Create or load ``cfg.name``; refuse a different config under the same name.

    Raises:
        ConfigError: the stored study has another ``config_hash`` or other objectives.
    """
    storage = open_storage(storage_url)
    names = cfg.objective_names
    h = cfg.config_hash()
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if cfg.name in existing:
        study = optuna.load_study(study_name=cfg.name, storage=storage, sampler=make_sampler(cfg))
        refuse_other_config(cfg, study, storage_url)
    else:
        study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=make_sampler(cfg),
                                    directions=cfg.directions, load_if_exists=True)
    if STUDY_CONFIG_HASH.get(study) is None:
        STUDY_CONFIG.set(study, cfg.raw)
        STUDY_CONFIG_HASH.set(study, h)
        set_study_objectives(study, cfg.objectives)
        study.set_metric_names(names)
    VERSIONS.set(study, versions or package_versions())
    if STUDY_TRAIN_CONFIG_HASH.get(study) is None:  # what an export's replay is checked against
        STUDY_TRAIN_CONFIG_HASH.set(study, cfg.train.config_hash())
    return study


def _quiet_ray() -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # the progress callback reports them
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_study(
    cfg: StudyConfig,
    *,
    storage_url: str | None = None,
    trial_fn: TrialFn | None = None,
    log: Callable[[str], None] | None = None,
    progress_every: float = 10.0,
    data_checked: bool = False,
) -> RunSummary:
    """Run or resume ``cfg`` until its budget; see the module docstring.

    Args:
        cfg: the resolved study config.
        storage_url: overrides ``cfg.storage`` / ``$GROWSEARCH_STORAGE`` (default
            ``sqlite:///<outputs>/study.db``).
        trial_fn: the training function (default :func:`growsearch.train.loop.train`);
            an internal hook for benchmarks.
        log: where progress lines go (default stderr).
        progress_every: seconds between status lines.
        data_checked: the caller already ran :func:`~growsearch.search.resources.check_data`
            on ``cfg.train.data`` (the run command does, before any progress line).

    Raises:
        ConfigError: bad storage, a different config under the same study name.
        DataError: the corpus cannot be used (checked before anything else, see :func:`~growsearch.search.resources.check_data`).
        RunFailed: the session gave up with the budget unmet (too many failed trials, or
            the sampler only repeated schedules the study has), or the storage failed
            mid-run (read-only, disk full): one line naming the cause; rerunning the same
            command resumes.
    """
    check_scheduler(cfg)  # again after overrides (--trials): a population within the budget
    url = preflight(cfg, storage_url)  # storage URL and writable folders: one line, nothing to undo
    try:
        return _run_study(cfg, url, trial_fn=trial_fn, log=log, progress_every=progress_every, data_checked=data_checked)
    except GrowsearchError:
        raise
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        raise RunFailed(f"storage {redact_url(url)}: {fault}; the session stopped") from None


def _run_study(cfg: StudyConfig, url: str, *, trial_fn: TrialFn | None, log: Callable[[str], None] | None,
               progress_every: float, data_checked: bool) -> RunSummary:
    t_start = time.time()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if not data_checked:
        check_data(study_data_config(cfg), say)  # the corpus (layout, protocols, every file) before the study and Ray
    versions = package_versions()
    say(f"[growsearch] creating the study {cfg.name!r} (or opening it to resume) in {redact_url(url)}")
    study = open_study(cfg, url, versions=versions)
    mixed = mark_flops_definition(study)  # what this study's FLOPs mean (README, cost)
    if mixed:
        say(f"[growsearch] warning: {mixed}")
    summary = RunSummary(cfg.name, redact_url(url))
    searcher = StudySearcher(
        study,
        cfg.space,
        objectives=cfg.objective_names,
        budget_trials=cfg.budget.trials,
        references=[(r.label, r.schedule) for r in cfg.reference],
        constraint_fn=cfg.constraints.values if cfg.constraints.active() else None,
        seed=cfg.train.seed,
        versions=versions,
        heartbeat_max_failures=cfg.execution.heartbeat_max_failures,
        budget_train_flops=cfg.budget.train_flops,
    )
    info = searcher.resync()
    searcher.start_heartbeats()  # the lease stays fresh while Ray starts (other drivers read it)
    say(f"[growsearch] study {cfg.name!r} in {redact_url(url)}: {info['complete']} complete, "
        f"{info['waiting']} waiting" + (f", {info['requeued']} re-enqueued from an interrupted run" if info["requeued"] else ""))
    summary.requeued = info["requeued"]
    if searcher.budget_reached:
        say(f"[growsearch] budget reached ({searcher.n_complete} finished trials); nothing to run (raise --trials to extend)")
        searcher.close("budget reached")
        return _finish(summary, study, searcher, t_start)
    if searcher.flops_budget_reached:
        say(f"[growsearch] training-FLOPs budget reached ({searcher.spent_train_flops():.4g} of {cfg.budget.train_flops:.4g}); "
            "nothing to run (raise budget.train_flops to extend)")
        searcher.close("budget reached")
        return _finish(summary, study, searcher, t_start)

    import ray
    from ray import tune

    _quiet_ray()
    ex = cfg.execution
    local_ray: RayGuard | None = None
    started_ray = False
    shared = cfg.shared_dir
    try:
        train_cfg = worker_train_config(cfg.train.model_copy(update={"data": study_data_config(cfg)}))
        if ex.prefix_reuse:  # every trial's cache reads its size limit from the folder
            from growsearch.train.prefix_cache import set_limit

            set_limit(shared / "prefix_cache", int(ex.prefix_cache_max_gb * 2**30), ex.prefix_wait_s)
    except BaseException:
        searcher.close("the run did not start")  # release the lease, stop its heartbeats
        raise
    trials_dir = study_trials_dir(shared, url, cfg.name)
    ctx = TrialContext(
        train=train_cfg,
        space=cfg.space,
        trials_dir=str(trials_dir),
        study=study_identity(url, cfg.name, cfg.config_hash()),
        prefix_cache=str(shared / "prefix_cache") if ex.prefix_reuse else None,
        crash_at_epoch=ex.crash_at_epoch,
        epoch_delay_s=ex.epoch_delay_s,
        trial_fn=trial_fn,
    )
    concurrency = ex.max_concurrent or max(1, int((ex.num_cpus or os.cpu_count() or 1) // ex.cpus_per_trial))
    interrupted = False
    ray_failed = ""
    scheduler: Any = None
    try:
        if not ray.is_initialized():
            say(f"[growsearch] connecting to Ray at {ex.address}" if ex.address
                else f"[growsearch] starting Ray ({ex.num_cpus or os.cpu_count()} CPUs; takes a while on a busy machine)")
            if ex.address:
                ray.init(address=ex.address, log_to_driver=False, logging_level=logging.ERROR)
                started_ray = True
            else:
                # a fresh local instance in a private temp dir, never a cluster that a
                # `ray start` on this machine registered in /tmp/ray; it ends with this driver
                local_ray = start_local_ray(num_cpus=ex.num_cpus, num_gpus=ex.num_gpus, include_dashboard=False,
                                            log_to_driver=False, logging_level=logging.ERROR)
        check_trial_fits(ex.cpus_per_trial, ex.gpus_per_trial)  # else Tune would wait forever
        progress = _make_progress(searcher, concurrency, cfg.budget.wall_time, progress_every, say, cfg.epochs)
        trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                        {"cpu": ex.cpus_per_trial, "gpu": ex.gpus_per_trial})
        scheduler = make_scheduler(cfg, searcher, trials_dir, train_cfg)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=-1,
                max_concurrent_trials=concurrency,
                time_budget_s=cfg.budget.wall_time,
                reuse_actors=True,
                trial_dirname_creator=lambda t: f"trial_{(t.config or {}).get('trial_number', t.trial_id)}",
                trial_name_creator=lambda t: f"{cfg.name}_{(t.config or {}).get('trial_number', t.trial_id)}",
            ),
            run_config=tune.RunConfig(
                name=child_path(shared / "ray", f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}", "study name").name,
                storage_path=str(shared / "ray"),
                failure_config=tune.FailureConfig(max_failures=ex.retries),
                stop=searcher.stopper(),  # a lost lease (the heartbeat kept failing) ends the run
                verbose=0,
                callbacks=[progress],
            ),
        )
        try:
            tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
        except GrowsearchError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray/Tune itself failed (e.g. a worker killed mid-save): no raw traceback
            if not searcher.record_storage_fault(exc):  # a storage fault is reported as one below
                ray_failed = _ray_failure(exc)
                say(f"[growsearch] Ray Tune stopped: {ray_failed}")
        if not ray_failed and searcher.live and not searcher.budget_reached and not _wall_done(cfg, t_start):
            interrupted = True
        if getattr(scheduler, "ended", None) and not interrupted and not ray_failed:
            say(f"[growsearch] {scheduler.ended}")
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # a storage fault raised outside the searcher (a callback): one line below
        if not searcher.record_storage_fault(exc):
            raise
    finally:
        reason = ("stopped: this driver's heartbeat kept failing; re-enqueued" if searcher.lease_lost
                  else "interrupted (Ctrl-C) before the trial finished; re-enqueued" if interrupted
                  else f"Ray Tune stopped ({ray_failed}); re-enqueued" if ray_failed
                  else "stopped by the wall-time budget before it finished; re-enqueued")
        try:
            summary.requeued += searcher.close(reason)
        finally:
            if local_ray is not None:
                local_ray.close()
            elif started_ray:
                try:
                    ray.shutdown()
                except Exception:  # noqa: BLE001 - best effort on the way out; the summary matters more
                    pass
    summary.interrupted = interrupted
    summary.failed_session = list(searcher.failures)
    if searcher.storage_error is not None:
        raise RunFailed(f"storage {redact_url(url)}: {searcher.storage_error}; the session stopped "
                        "(trials it could not mark are re-enqueued by the next run)")
    _finish(summary, study, searcher, t_start)
    if searcher.lease_lost is not None:
        raise RunFailed(f"study {cfg.name!r}: {searcher.lease_lost}; this driver stopped: {summary.complete} COMPLETE "
                        "trials are kept, running trials were re-enqueued; rerun the same command to resume")
    if interrupted:
        say(f"[growsearch] interrupted: {summary.complete} COMPLETE trials are kept; running trials were re-enqueued. "
            "Resume with the same command.")
    elif ray_failed:
        raise RunFailed(f"study {cfg.name!r}: Ray Tune stopped: {ray_failed}; {summary.complete} COMPLETE trials are kept, "
                        "running trials were re-enqueued; rerun the same command to resume")
    elif searcher.gave_up is not None and not summary.budget_reached:
        first = (f"; first failure: trial {summary.failed_session[0][0]}: "
                 f"{(summary.failed_session[0][1].strip().splitlines() or [''])[0][:300]}" if summary.failed_session else "")
        budget = f" of the budget of {searcher.budget_trials}" if searcher.budget_trials is not None else ""
        raise RunFailed(f"study {cfg.name!r}: {searcher.gave_up}, with {summary.complete} COMPLETE trials{budget}{first}")
    elif summary.complete == 0 and summary.failed_session:
        raise RunFailed(f"study {cfg.name!r}: all {len(summary.failed_session)} trials failed; first: trial "
                        f"{summary.failed_session[0][0]}: {(summary.failed_session[0][1].strip().splitlines() or [''])[0][:300]}")
    return summary


def worker_train_config(train: Any) -> Any:
    """The training config as workers see it: the data root made absolute (Tune runs each
    trial in its own working directory), the synthetic corpus generated once here.

    Raises:
        DataError: the dataset's root is not set and its environment variable is empty.
    """
    data = train.data
    root = Path(data.resolved_root()).expanduser().resolve()
    if data.dataset == "synthetic":
        from growsearch.data.synthetic import ensure_corpus

        ensure_corpus(root, seed=data.synth_seed, size=data.synth_size)
    return train.model_copy(update={"data": data.model_copy(update={"root": str(root)})})



def _ray_failure(exc: BaseException) -> str:
    """One line for an exception that escaped Ray Tune (a killed worker named as such)."""
    from growsearch.search.progress import system_kill_reason

    text = f"{type(exc).__name__}: {exc}"
    killed = system_kill_reason(text)
    if killed is not None:
        return killed
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0][:300]}" if first else type(exc).__name__


def _wall_done(cfg: StudyConfig, t_start: float) -> bool:
    return cfg.budget.wall_time is not None and time.time() - t_start >= cfg.budget.wall_time - 1.0


def _make_progress(searcher: StudySearcher, concurrency: int, wall: float | None, every: float,
                   say: Callable[[str], None], epochs: int | None = None) -> Any:
    from growsearch.search.progress import ProgressCallback

    class _Stream:
        def write(self, s: str) -> None:
            if s.strip():
                say(s.rstrip("\n"))

        def flush(self) -> None:
            pass

    console = say if hasattr(say, "region") else None  # a growsearch.search.console.Console: live display
    cb = ProgressCallback(searcher, concurrency=concurrency, wall_time=wall, stream=_Stream(), every=every,  # type: ignore[arg-type]
                          epochs=epochs, console=console)
    cb.load_existing()
    return cb


def _finish(summary: RunSummary, study: optuna.Study, searcher: StudySearcher, t_start: float) -> RunSummary:
    summary.complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    summary.pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    summary.budget_reached = (searcher.budget_reached or searcher.flops_budget_reached
                              or (searcher.budget_trials is not None and summary.complete + summary.pruned >= searcher.budget_trials))
    try:
        summary.front_size = len(study.best_trials) if summary.complete else 0
    except Exception:  # noqa: BLE001 - a summary line must not fail the run
        summary.front_size = 0
    reuse = summarise(TRIAL_METRICS.get(ft) or {} for ft in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    summary.train_flops, summary.train_flops_saved, summary.epochs_reused = (
        reuse["train_flops"], reuse["train_flops_saved"], reuse["epochs_reused"])
    STUDY_PREFIX_REUSE.set(study, {"train_flops": reuse["train_flops"], "train_flops_saved": reuse["train_flops_saved"],
                                   "prefix_epochs_reused": reuse["epochs_reused"], "saved_fraction": reuse["saved_fraction"],
                                   "prefix_wait_s": reuse["wait_s"]})
    summary.wall_s = time.time() - t_start
    return summary

