"""Checks before a study starts trials: folders it writes are writable, and one trial's
resource request fits on some node of the Ray cluster (otherwise Tune waits forever, showing
trials as pending)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from growsearch.errors import ConfigError
from growsearch.search.attrs import STUDY_CONFIG_HASH


def check_writable(path: Path, what: str) -> None:
    """Create ``path`` and write (then remove) a probe file in it.

    Raises:
        ConfigError: it cannot be created or written, naming ``what`` (the config key).
    """
    probe = path / f".write-probe-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{what}: {path} is not writable ({exc.strerror or exc}); choose a folder this user can write") from None


def _largest_fit(nodes: list[dict[str, Any]], cpu: float, gpu: float) -> bool:
    return any(float(n.get("Resources", {}).get("CPU", 0)) >= cpu and float(n.get("Resources", {}).get("GPU", 0)) >= gpu
               for n in nodes)


def check_trial_fits(cpus_per_trial: float, gpus_per_trial: float, nodes: list[dict[str, Any]] | None = None) -> None:
    """Refuse a per-trial request no live node of the (started) Ray cluster can hold.

    Args:
        nodes: ``ray.nodes()`` (default: asked from the connected cluster).

    Raises:
        ConfigError: no single node has ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.
    """
    if nodes is None:
        import ray

        nodes = ray.nodes()
    alive = [n for n in nodes if n.get("Alive", n.get("alive", True))]
    if not alive or _largest_fit(alive, cpus_per_trial, gpus_per_trial):
        return
    cpus = max(float(n.get("Resources", {}).get("CPU", 0)) for n in alive)
    gpus = max(float(n.get("Resources", {}).get("GPU", 0)) for n in alive)
    raise ConfigError(
        f"execution: one trial asks for {cpus_per_trial:g} CPU(s) and {gpus_per_trial:g} GPU(s), but no node of the Ray cluster "
        f"has that ({len(alive)} node(s); the largest has {cpus:g} CPU(s), {gpus:g} GPU(s)); lower execution.cpus_per_trial / "
        "gpus_per_trial or add resources"
    )


def preflight(cfg: Any, storage_flag: str | None) -> str:
    """The checks that need neither data, nor the study, nor Ray: the storage URL parses and the
    folders the study writes are writable. Run first, so bad input stays one line.

    Args:
        cfg: the resolved :class:`~growsearch.search.study.StudyConfig`.
        storage_flag: ``--storage`` (flag > ``$GROWSEARCH_STORAGE`` > config > default).

    Returns:
        The storage URL the study uses.

    Raises:
        ConfigError: a malformed storage URL (password redacted) or a folder that cannot be written.
    """
    from growsearch.search.storage import normalize_url, storage_url_from  # lazy: imports optuna

    url = storage_url_from(storage_flag, cfg.storage, cfg.default_storage)
    normalize_url(url)
    check_writable(cfg.outputs_dir, "outputs")
    check_writable(cfg.shared_dir, "execution.shared_dir" if cfg.execution.shared_dir else "outputs")
    return url


def study_data_config(cfg: Any) -> Any:
    """The study's data config as its trials use it: ``cache_dir`` (when null) set to
    ``<execution.shared_dir>/feature_cache``, so every trial on every node shares one feature cache."""
    data = cfg.train.data
    if data.cache_dir is None:
        data = data.model_copy(update={"cache_dir": cfg.shared_dir / "feature_cache"})
    return data


def check_data(data: Any, say: Callable[[str], None]) -> None:
    """Load the corpus as every trial will (decoding each listed file; cached verdicts of
    unchanged files are reused, and the trials on this machine reuse these), so bad data
    stops the run with one line before Ray starts.

    Raises:
        DataError: missing root or protocol, a bad protocol line, or an unusable file under
            ``on_bad_file: error`` (names the file and its protocol line).
    """
    from growsearch.data.splits import build_splits

    splits = build_splits(data, seed=0)
    counts = "/".join(str(len(ds)) for _, ds in splits)
    skipped = f"; {len(splits.skipped)} unusable file(s) skipped (on_bad_file: skip)" if splits.skipped else ""
    say(f"[growsearch] data: {counts} train/dev/eval utterances, every file decoded{skipped}")


def refuse_other_config(cfg: Any, study: Any, storage_url: str) -> None:
    """Refuse ``cfg`` for an existing ``study`` created with another config or other directions.

    Raises:
        ConfigError: the stored ``config_hash`` or the directions differ.
    """
    from growsearch.redact import redact_url

    old, h = STUDY_CONFIG_HASH.get(study), cfg.config_hash()
    if old is not None and old != h:
        raise ConfigError(
            f"{cfg.path or 'study'}: study {cfg.name!r} in {redact_url(storage_url)} was created with another config "
            f"(config_hash {old}, this config {h}); pass --study-name NEW to start a new study, or run the original config"
        )
    have = [d.name.lower() for d in study.directions]
    if have != [o.direction for o in cfg.objectives]:
        raise ConfigError(f"{cfg.path or 'study'}: study {cfg.name!r} has directions {have}; the config asks for {cfg.directions}")


def check_existing_study(cfg: Any, storage_url: str) -> None:
    """Before any progress: if the storage already holds ``cfg.name``, it must have been made
    with this config (:func:`refuse_other_config`). Opens (and for a new SQLite file creates)
    the storage; creates no study.

    Raises:
        ConfigError: the stored study has another config or other directions.
    """
    import optuna

    from growsearch.search.storage import open_storage

    storage = open_storage(storage_url, heartbeat=False)  # only a look: no heartbeat settings (and no warning about them)
    if cfg.name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}:
        refuse_other_config(cfg, optuna.load_study(study_name=cfg.name, storage=storage), storage_url)
