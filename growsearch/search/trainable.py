"""The Ray Tune trainable: one Optuna trial = one ``train()`` run in a stable folder.

The driver's :class:`~growsearch.search.searcher.StudySearcher` hands each Tune trial a
config ``{trial_number, params, reference, schedule, resume_from}``; the worker rebuilds the
schedule from the parameters (``space.decode``) or takes the reference schedule, trains into
:func:`trial_dir` ``<trials_dir>/<trial number:05d>`` (so a restarted trial resumes from its
own checkpoint, and a trial re-enqueued after its driver stopped resumes from the newest
checkpoint of the trials it continues, ``resume_from``),
reports each epoch to Tune (first the epochs restored from a checkpoint or the shared
prefix, with ``restored: 1``, so a trial scheduler sees every epoch) and ends with one result
carrying ``gs_final: True`` and a JSON payload (status, metrics, curves, node, fail reason) that the searcher tells to Optuna.

A NaN loss is a result (``status: nan``), not an exception: Tune must not retry a
deterministic failure; nor is an input error (a schedule the backbone refuses, bad data),
which ends the trial FAIL with its message; nor is a full disk or a refused memory allocation
(:func:`deterministic_failure`). Any other exception propagates, so Tune restarts the trial up to
``max_failures`` times (the trainer resumes from the checkpoint).

Trial folders belong to their study: ``trials_dir`` is :func:`study_trials_dir`
``<outputs or shared_dir>/trials/<study name>-<key>``, the key hashing the storage (without
password) and the study name, so two studies sharing an outputs folder never share a trial
folder. Each trial folder records its study's identity (``study.json``: name, key,
config hash); a trial refuses (FAIL, one line, no retry) a folder whose record names another
study, so no study ever resumes another's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growsearch.errors import GrowsearchError, RunFailed
from growsearch.schedule import GrowthSchedule
from growsearch.search.searcher import FINAL_KEY, PAYLOAD_KEY
from growsearch.search.space import SearchSpace

__all__ = ["STUDY_FILE", "TrialContext", "package_versions", "run_trial", "study_identity", "study_key",
           "study_trials_dir", "trial_dir"]

#: ``trial_fn(config, schedule, *, out_dir, on_epoch, resume, prefix_cache) -> result`` with
#: a ``metrics`` dict (or mapping) like :class:`growsearch.train.loop.TrainResult`.
TrialFn = Callable[..., Any]

CURVE_KEYS = ("dev_eer", "train_loss", "params", "flops", "train_flops")
#: The study identity recorded in every trial folder.
STUDY_FILE = "study.json"


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares (sent once to the workers).

    Attributes:
        train: the :class:`~growsearch.train.config.TrainConfig` of the study.
        space: the bound search space (decodes parameters).
        trials_dir: :func:`study_trials_dir`; trial ``n`` trains in :func:`trial_dir`.
        prefix_cache: the shared-prefix cache folder, or ``None`` (no reuse).
        crash_at_epoch: test hook: exit the process hard after this epoch, first attempt only.
        epoch_delay_s: test hook: sleep this long after each epoch's report.
        trial_fn: the training function; ``None`` = :func:`growsearch.train.loop.train`.
    """

    train: Any
    space: SearchSpace
    trials_dir: str
    prefix_cache: str | None = None
    crash_at_epoch: int | None = None
    epoch_delay_s: float = 0.0
    trial_fn: TrialFn | None = None
    study: dict[str, Any] | None = None


def trial_dir(trials_dir: str | Path, number: int) -> Path:
    """The stable folder of Optuna trial ``number`` (the one place that builds it)."""
    return Path(trials_dir) / f"{int(number):05d}"


def _storage_identity(storage_url: str) -> str:
    """The storage as an identity: a SQLite file's resolved path, or the URL without its password."""
    from growsearch.search.storage import normalize_url, sqlite_path

    url = normalize_url(storage_url)
    path = sqlite_path(url)
    if path is not None:
        return "sqlite:///" + str(path.expanduser().resolve())
    if url.startswith("sqlite"):
        return url
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)
    bare = URL.create(u.drivername, username=u.username, host=(u.host or "").lower() or None, port=u.port,
                      database=u.database, query=u.query)
    return bare.render_as_string(hide_password=False)


def study_key(storage_url: str, study_name: str) -> str:
    """12 hex digits of sha256 over the storage identity and the study name."""
    text = json.dumps([_storage_identity(storage_url), study_name])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def study_trials_dir(root: str | Path, storage_url: str, study_name: str) -> Path:
    """``<root>/trials/<study name>-<study_key>``: where the trials of this one study train."""
    from growsearch.paths import child_path

    return child_path(Path(root) / "trials", f"{study_name}-{study_key(storage_url, study_name)}", "study name")


def study_identity(storage_url: str, study_name: str, config_hash: str | None) -> dict[str, Any]:
    """What a trial folder records about its study (no password)."""
    from growsearch.redact import redact_url

    return {"study": study_name, "key": study_key(storage_url, study_name), "config_hash": config_hash,
            "storage": redact_url(_storage_identity(storage_url))}


def check_study_record(out: Path, identity: dict[str, Any] | None) -> str | None:
    """Record ``identity`` in trial folder ``out`` (first use), or compare it with the record.

    Returns:
        ``None`` when the folder is this study's, else one line saying whose it is.
    """
    if identity is None:
        return None
    rec_file = out / STUDY_FILE
    try:
        rec = json.loads(rec_file.read_text())
    except FileNotFoundError:
        from growsearch.atomic import atomic_write_text

        atomic_write_text(rec_file, json.dumps(identity, indent=1) + "\n")
        return None
    except (OSError, ValueError) as exc:
        return f"{rec_file}: unreadable study record ({exc}); refusing to resume a checkpoint of unknown origin"
    if not isinstance(rec, dict) or (rec.get("key"), rec.get("config_hash")) != (identity["key"], identity["config_hash"]):
        who = rec.get("study") if isinstance(rec, dict) else None
        return (f"{out}: this folder belongs to study {who!r} (key {rec.get('key') if isinstance(rec, dict) else None}, "
                f"config_hash {rec.get('config_hash') if isinstance(rec, dict) else None}), not to study "
                f"{identity['study']!r} (key {identity['key']}, config_hash {identity['config_hash']}); refusing its checkpoint")
    return None


def package_versions() -> dict[str, str]:
    """Versions recorded with every study and trial."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("growsearch", "torch", "torchaudio", "optuna", "ray"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _node() -> dict[str, str]:
    node = {"hostname": socket.gethostname()}
    try:
        import ray

        if ray.is_initialized():
            node["node_id"] = ray.get_runtime_context().get_node_id()
            node["ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - node facts are informative only
        pass
    return node


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def _final(payload: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {FINAL_KEY: True, PAYLOAD_KEY: json.dumps(_clean(payload), default=str)}
    for k, v in (payload.get("metrics") or {}).items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = v
    return out



def _default_trial_fn() -> TrialFn:
    """:func:`growsearch.train.loop.train`, imported only when a trial runs (torch is heavy)."""
    from growsearch.train.loop import train

    return train


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable (see the module docstring)."""
    from ray import tune

    number = int(config["trial_number"])
    out = trial_dir(ctx.trials_dir, number)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if deterministic_failure(exc) is None:
            raise
        tune.report(_final({"status": "failed", "fail_reason": deterministic_failure(exc), "detail": str(exc),
                            "node": _node(), "curves": {}, "attempt": {"attempts": 1, "resumed_checkpoint": False}}))
        return
    foreign = check_study_record(out, ctx.study)
    if foreign is not None:  # another study's folder: never load its state (deterministic, no retry)
        tune.report(_final({"status": "failed", "fail_reason": f"foreign checkpoint: {foreign}", "detail": foreign,
                            "node": _node(), "curves": {}, "attempt": {"attempts": 0, "resumed_checkpoint": False}}))
        return
    if config.get("schedule") is not None:
        schedule = GrowthSchedule.from_dict(config["schedule"], source=f"trial {number} schedule")
    else:
        schedule = ctx.space.decode(config.get("params") or {})
    fn = ctx.trial_fn or _default_trial_fn()
    # attempts of this trial (Tune restarts a crashed one) and whether it resumes a checkpoint
    attempts_file = out / ".attempts"
    try:
        attempts = int(attempts_file.read_text().strip() or 0) + 1
    except (OSError, ValueError):
        attempts = 1
    try:
        attempts_file.write_text(f"{attempts}\n")
    except OSError as exc:  # a full disk fails the trial below, where training writes
        if deterministic_failure(exc) is None:
            raise
    from growsearch.train.state import CHECKPOINT_DIR, STATE_FILE

    resumed = (out / CHECKPOINT_DIR / STATE_FILE).is_file()
    attempt_info: dict[str, Any] = {"attempts": attempts, "resumed_checkpoint": resumed}
    extra: dict[str, Any] = {}
    if not resumed:  # a rerun of an interrupted trial continues from its last checkpoint
        for prev in config.get("resume_from") or ():
            state = trial_dir(ctx.trials_dir, int(prev)) / CHECKPOINT_DIR / STATE_FILE
            if state.is_file():
                extra["resume_from"] = state
                attempt_info.update(resumed_checkpoint=True, resumed_from_trial=int(prev))
                break

    def on_epoch(record: dict[str, Any], checkpoint_dir: Path) -> None:
        if record.get("restored"):  # an epoch trained before (checkpoint, shared prefix): reported, no test hooks
            rep = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
            tune.report({**rep, "restored": 1, FINAL_KEY: False})
            return
        marker = out / ".crashed_once"
        if ctx.crash_at_epoch is not None and int(record.get("epoch", -1)) == ctx.crash_at_epoch and not marker.exists():
            marker.write_text("the crash_at_epoch test hook killed this process once\n")
            os._exit(17)
        rep = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        rep[FINAL_KEY] = False
        tune.report(rep)
        if ctx.epoch_delay_s:
            time.sleep(ctx.epoch_delay_s)

    try:
        result = fn(ctx.train, schedule, out_dir=out, on_epoch=on_epoch, resume=True, prefix_cache=ctx.prefix_cache, **extra)
    except (OSError, MemoryError, RuntimeError) as exc:
        reason = deterministic_failure(exc)
        if reason is None:
            raise  # anything else may be a crash: Tune restarts the trial from its checkpoint
        tune.report(_final({"status": "failed", "fail_reason": reason, "detail": str(exc)[:2000], "node": _node(),
                            "curves": {}, "attempt": attempt_info}))
        return
    except RunFailed as exc:
        metrics = _read_metrics(out)
        nan = metrics.get("status") == "nan" or "nonfinite" in type(exc).__name__.lower()
        tune.report(_final({"status": "nan" if nan else "failed", "fail_reason": "nan" if nan else f"failed: {exc}",
                            "detail": str(exc), "node": _node(), "curves": _curves(metrics), "attempt": attempt_info}))
        return
    except GrowsearchError as exc:  # a bad schedule/config/data: deterministic, so no retry
        tune.report(_final({"status": "failed", "fail_reason": f"{type(exc).__name__}: {exc}", "detail": str(exc),
                            "node": _node(), "curves": {}, "attempt": attempt_info}))
        return
    metrics = dict(getattr(result, "metrics", None) or (result if isinstance(result, dict) else {}) or _read_metrics(out))
    status = str(metrics.get("status", "ok"))
    payload = {
        "status": status,
        "metrics": {k: v for k, v in metrics.items() if k not in ("epochs", "schedule")},
        "curves": _curves(metrics),
        "node": _node(),
        "attempt": attempt_info,
    }
    if status != "ok":
        payload["fail_reason"] = status
    tune.report(_final(payload))


def deterministic_failure(exc: BaseException) -> str | None:
    """The fail reason of an error that a restart would only repeat (a full disk, a refused
    memory allocation), or ``None``. Such a trial ends FAIL at once instead of being retried."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        where = f": {exc.filename}" if exc.filename else ""
        return f"disk full{where} ({exc.strerror})" if exc.errno != errno.EROFS else f"read-only file system{where}"
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text.lower():
        return f"out of memory: {text.splitlines()[0][:300] if text else type(exc).__name__}"
    return None


def _read_metrics(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _curves(metrics: dict[str, Any]) -> dict[str, list[Any]]:
    epochs = metrics.get("epochs") or []
    return {k: [e.get(k) for e in epochs] for k in CURVE_KEYS} if epochs else {k: [] for k in CURVE_KEYS}
