"""``growsearch run STUDY.yaml``: run (or resume) a search study on Ray Tune.

Progress goes to stderr; the session summary (JSON) to stdout. Running the same command
again resumes the study: COMPLETE trials are kept, trials of an interrupted run rerun.
"""

from __future__ import annotations

import contextlib
import json
import sys

import click

from growsearch.errors import RunFailed


@click.command("run")
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Budget of COMPLETE trials (overrides budget.trials).")
@click.option("--storage", default=None, help="Optuna storage URL (default: $GROWSEARCH_STORAGE, the study's storage, or sqlite:///<outputs>/study.db).")
@click.option("--address", default=None, help="Address of an existing Ray cluster (overrides execution.address).")
@click.option("--study-name", default=None, help="Optuna study name (default: the study's name).")
@click.option("--smoke", is_flag=True, help="A quick check of the whole pipeline: 2 trials, 2 batches per epoch, study '<name>-smoke'.")
def command(study_file: str, trials: int | None, storage: str | None, address: str | None, study_name: str | None, smoke: bool) -> None:
    """Run (or resume) the search described by STUDY_FILE (a studies/*.yaml)."""
    from growsearch.search.runner import run_study
    from growsearch.search.study import load_study_config, smoke_config

    cfg = load_study_config(study_file)
    if smoke:
        cfg = smoke_config(cfg)
    cfg = cfg.with_overrides(name=study_name, trials=trials, address=address)
    resume = _resume_command(study_file, trials, storage, address, study_name, smoke)
    # stdout carries only the summary: Ray prints worker/raylet errors to stdout, send them to stderr
    try:
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_study(cfg, storage_url=storage)  # flag > $GROWSEARCH_STORAGE > config > default
    except RunFailed as exc:  # gave up, or a storage fault: rerunning resumes
        raise RunFailed(f"{exc}; resume with: {resume}") from None
    click.echo(json.dumps(summary.to_dict(), indent=2))
    if summary.interrupted:
        click.echo(f"growsearch: interrupted; resume with: {resume}", err=True)
        sys.exit(130)


def _resume_command(study_file: str, trials: int | None, storage: str | None, address: str | None,
                    study_name: str | None, smoke: bool) -> str:
    """The command that resumes this run (the storage URL's password redacted)."""
    import shlex

    from growsearch.redact import redact_url

    parts = ["growsearch", "run", study_file]
    for flag, value in (("--trials", trials), ("--storage", redact_url(storage) if storage else None),
                        ("--address", address), ("--study-name", study_name)):
        if value is not None:
            parts += [flag, str(value)]
    if smoke:
        parts.append("--smoke")
    return " ".join(shlex.quote(p) for p in parts)
