"""``growsearch train CONFIG.yaml``: train one backbone while applying a growth schedule.

Progress goes to stderr (one line per epoch); the final metrics summary (JSON, without the
per-epoch list) goes to stdout. Exit codes: 0 ok, 1 the run failed (NaN/Inf loss), 2 bad
input (YAML, keys, data, schedule), each as one line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from growsearch.errors import ScheduleError


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--schedule", "schedule_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Growth schedule YAML/JSON (overrides the config's inline schedule); an exported file with several "
                   "schedules needs --pick.")
@click.option("--pick", type=int, default=None, help="Index of the schedule to use in a file holding several (0-based).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (metrics.json, scores.txt, checkpoints). Default: runs/<config name>.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override training.epochs.")
@click.option("--seed", type=int, default=None, help="Override the seed.")
@click.option("--no-resume", is_flag=True, help="Start from scratch even if the output folder holds a checkpoint.")
@click.option("--prefix-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the shared-prefix cache (baseline epochs reused across schedules).")
def command(config: Path, schedule_file: Path | None, pick: int | None, out_dir: Path | None, epochs: int | None,
            seed: int | None, no_resume: bool, prefix_cache: Path | None) -> None:
    """Train CONFIG's backbone on its data, applying the growth schedule, and evaluate it."""
    from growsearch.schedule import load_schedules
    from growsearch.train.config import load_train_config
    from growsearch.train.loop import train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    cfg = load_train_config(config).with_overrides(epochs=epochs, seed=seed)
    schedule = None
    if schedule_file is not None:
        scheds = load_schedules(schedule_file)
        if pick is None:
            if len(scheds) > 1:
                raise ScheduleError(f"{schedule_file}: holds {len(scheds)} schedules; choose one with --pick 0..{len(scheds) - 1}")
            pick = 0
        if not 0 <= pick < len(scheds):
            raise ScheduleError(f"{schedule_file}: --pick {pick} is out of range; it holds {len(scheds)} schedule(s) (0..{len(scheds) - 1})")
        schedule = scheds[pick]
    elif pick is not None:
        raise click.UsageError("--pick needs --schedule")
    out = out_dir if out_dir is not None else Path("runs") / config.stem
    source = f"{config}: schedule" if schedule_file is None else str(schedule_file)
    if pick is not None and schedule_file is not None:
        source += f" [schedule {pick}]"
    result = train(cfg, schedule, out_dir=out, resume=not no_resume, prefix_cache=prefix_cache, schedule_source=source)
    summary = {k: v for k, v in result.metrics.items() if k != "epochs"}
    summary["out_dir"] = str(out)
    click.echo(json.dumps(summary, indent=2))
