"""``growsearch train CONFIG.yaml``: train one backbone while applying a growth schedule.

Progress goes to stderr (one line per epoch); the final metrics summary (JSON, without the
per-epoch list) goes to stdout. Exit codes: 0 ok, 1 the run failed (NaN/Inf loss), 2 bad
input (YAML, keys, data, schedule), each as one line.

Replaying an exported schedule (``growsearch export``): the picked item's ``seed`` is used
unless ``--seed`` is given, so ``growsearch train CONFIG --schedule best.yaml --pick I``
reruns the trial exactly; the seed used and where it came from go to stderr (with the
first progress line, so a run that fails on bad input still prints one line).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from growsearch.bounds import SEED_MAX, check_seed
from growsearch.errors import GrowsearchError, ScheduleError


def item_seed(meta: dict[str, Any], source: str) -> int | None:
    """The ``seed`` of an exported schedule item, or ``None`` when it has none.

    Args:
        meta: the item's metadata (:func:`growsearch.schedule.load_schedule_items`).
        source: how errors name the item, e.g. ``best.yaml: schedules[0]``.

    Raises:
        ScheduleError: ``seed`` is present but not an integer.
    """
    seed = meta.get("seed")
    if seed is None:
        return None
    try:
        return check_seed(seed, f"{source}.seed")
    except GrowsearchError as exc:
        raise ScheduleError(str(exc)) from None


def export_mismatch(schedule_file: Path, cfg: Any, config: Path) -> str | None:
    """Why ``cfg`` is not the training config the export's study used, or ``None``.

    An export records its study's ``train_config_hash`` (data, model and training settings;
    :meth:`growsearch.train.config.TrainConfig.config_hash`); a plain schedule file, or an export
    without it, is not checked.
    """
    from growsearch.yamlio import load_yaml

    doc = load_yaml(schedule_file, what="schedule file")
    want = doc.get("train_config_hash") if isinstance(doc, dict) and "growsearch_export" in doc else None
    if not want:
        return None
    have = cfg.config_hash()
    if have == want:
        return None
    return (f"{schedule_file}: exported from study {doc.get('study')!r} trained with config hash {want} "
            f"(config_hash {doc.get('config_hash')}), but {config} gives {have}: its data, model, training settings or epochs differ")


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--schedule", "schedule_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Growth schedule YAML/JSON (overrides the config's inline schedule); an exported file with several "
                   "schedules needs --pick.")
@click.option("--pick", type=int, default=None, help="Index of the schedule to use in a file holding several (0-based).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (metrics.json, scores.txt, checkpoints). Default: runs/<config name>.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override training.epochs.")
@click.option("--seed", type=int, default=None, help=f"Override the seed (0..{SEED_MAX}).")
@click.option("--no-resume", is_flag=True, help="Start from scratch even if the output folder holds a checkpoint.")
@click.option("--prefix-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the shared-prefix cache (training states reused by schedules that agree up to an epoch).")
@click.option("--dry-run", is_flag=True, help="Build the model and apply the schedule without data, weight files or "
                                               "training; print per phase the parameters, trainable entries, inference "
                                               "FLOPs per second of audio and projected training FLOPs.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print one JSON object.")
@click.option("--train-clips", type=click.IntRange(min=1), default=None,
              help="With --dry-run: training clips per epoch (default: counted from the corpus or its documented size).")
@click.option("--force", is_flag=True, help="Replay an export even if CONFIG differs from the config its study trained with.")
def command(config: Path, schedule_file: Path | None, pick: int | None, out_dir: Path | None, epochs: int | None,
            seed: int | None, no_resume: bool, prefix_cache: Path | None, dry_run: bool = False, as_json: bool = False,
            train_clips: int | None = None, force: bool = False) -> None:
    """Train CONFIG's backbone on its data, applying the growth schedule, and evaluate it."""
    from growsearch.schedule import load_schedule_items
    from growsearch.train.config import load_train_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if seed is not None:
        check_seed(seed, "--seed")
    items = load_schedule_items(schedule_file) if schedule_file is not None else []  # a bad file: reported before torch loads
    base = load_train_config(config)
    schedule = None
    seed_from = "--seed" if seed is not None else f"{config}"
    if schedule_file is not None:
        if pick is None:
            if len(items) > 1:
                raise ScheduleError(f"{schedule_file}: holds {len(items)} schedules; choose one with --pick 0..{len(items) - 1}")
            pick = 0
        if not 0 <= pick < len(items):
            raise ScheduleError(f"{schedule_file}: --pick {pick} is out of range; it holds {len(items)} schedule(s) (0..{len(items) - 1})")
        schedule, meta = items[pick]
        if seed is None:
            exported = item_seed(meta, f"{schedule_file}: schedules[{pick}]")
            if exported is not None:
                seed = exported
                trial = f", trial {meta['trial']}" if meta.get("trial") is not None else ""
                seed_from = f"{schedule_file} [schedule {pick}{trial}]"
        elif meta.get("seed") is not None and meta.get("seed") != seed:
            seed_from += f", not the exported item's seed {meta['seed']!r}"
    elif pick is not None:
        raise click.UsageError("--pick needs --schedule")
    cfg = base.with_overrides(epochs=epochs, seed=seed)
    if dry_run or as_json or train_clips is not None:  # --dry-run: costs only, nothing is trained or read
        _dry_run(cfg, schedule, schedule_file, config, pick, dry_run, as_json, train_clips)
        return
    pending = [f"seed {cfg.seed} (from {seed_from})"]
    if schedule_file is not None:
        mismatch = export_mismatch(schedule_file, cfg, config)
        if mismatch and not force:
            raise ScheduleError(f"{mismatch}; the replay would not reproduce the exported trial. Pass --force to train anyway")
        if mismatch:
            click.echo(f"growsearch: warning: {mismatch}; training anyway (--force)", err=True)

    def log(msg: str) -> None:
        """stderr; the seed line goes out with the first one (a run that fails on bad input prints one line)."""
        while pending:
            click.echo(pending.pop(), err=True)
        click.echo(msg, err=True)

    out = out_dir if out_dir is not None else Path("runs") / config.stem
    source = f"{config}: schedule" if schedule_file is None else str(schedule_file)
    if pick is not None and schedule_file is not None:
        source += f" [schedule {pick}]"
    from growsearch.train.loop import train  # torch: only once the input is known to be good

    result = train(cfg, schedule, out_dir=out, resume=not no_resume, prefix_cache=prefix_cache, schedule_source=source,
                   log=log)
    summary = {k: v for k, v in result.metrics.items() if k != "epochs"}
    summary["out_dir"] = str(out)
    click.echo(json.dumps(summary, indent=2))


def _dry_run(cfg: Any, schedule: Any, schedule_file: Path | None, config: Path, pick: int | None, dry_run: bool,
             as_json: bool, train_clips: int | None) -> None:
    """``--dry-run [--json] [--train-clips N]`` (see :mod:`growsearch.train.dryrun`)."""
    from growsearch.train.dryrun import dry_run as run_dry
    from growsearch.train.dryrun import format_dry_run

    if not dry_run:
        raise click.UsageError("--json and --train-clips go with --dry-run")
    source = f"{config}: schedule" if schedule_file is None else str(schedule_file)
    if pick is not None and schedule_file is not None:
        source += f" [schedule {pick}]"
    report = run_dry(cfg, schedule, train_clips=train_clips, schedule_source=source)
    click.echo(json.dumps(report, indent=2) if as_json else format_dry_run(report))
