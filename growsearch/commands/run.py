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
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Budget of finished (COMPLETE or PRUNED) trials (overrides budget.trials).")
@click.option("--storage", default=None, help="Optuna storage URL (default: $GROWSEARCH_STORAGE, the study's storage, or sqlite:///<outputs>/study.db).")
@click.option("--address", default=None, help="Address of an existing Ray cluster (overrides execution.address).")
@click.option("--study-name", default=None, help="Optuna study name (default: the study's name).")
@click.option("--smoke", is_flag=True, help="A quick check of the whole pipeline: 2 trials, 2 batches per epoch, study '<name>-smoke'.")
@click.option("-q", "--quiet", "verbosity", flag_value=0, help="No progress on stderr (errors and the JSON summary only).")
@click.option("-v", "--verbose", "verbosity", flag_value=2, help="Also one line per epoch of every trial.")
def command(study_file: str, trials: int | None, storage: str | None, address: str | None, study_name: str | None, smoke: bool,
            verbosity: int | None) -> None:
    """Run (or resume) the search described by STUDY_FILE (a studies/*.yaml).

    Progress goes to stderr: a live bar and one line per running trial on a terminal, plain
    status lines in a pipe or a file. stdout carries only the JSON summary."""
    from growsearch.search.console import Console
    from growsearch.search.study import load_study_config, smoke_config

    console = Console(verbosity=1 if verbosity is None else verbosity)
    try:
        # on a terminal only, erased again: bad input stays one line (importing torch to check the model takes a while)
        console.region([f"[growsearch] reading {study_file} (importing torch to check the model)"])
        cfg = load_study_config(study_file)  # bad input is reported before Ray is imported
        console.close()
        if smoke:
            cfg = smoke_config(cfg)
        cfg = cfg.with_overrides(name=study_name, trials=trials, address=address)
        resume = _resume_command(study_file, trials, storage, address, study_name, smoke)
        from growsearch.search.resources import check_data, check_existing_study, preflight, study_data_config

        url = preflight(cfg, storage)  # a malformed storage URL or an unwritable folder: one line, before any progress
        # the corpus, decoded before Ray starts (bad data: one line); on a terminal a note that is erased again
        console.region([f"[growsearch] checking the corpus of {study_file} (every file decoded once; unchanged files cached)"])
        data_lines: list[str] = []
        check_data(study_data_config(cfg), data_lines.append)
        check_existing_study(cfg, url)  # a changed config under the same name: one line (after the data: no study.db for bad data)
        for line in data_lines:
            console(line)
        console.phase(f"read {study_file}; importing Ray Tune")
        from growsearch.search.runner import run_study

        # stdout carries only the summary: Ray prints worker/raylet errors to stdout, send them to stderr
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_study(cfg, storage_url=storage, log=console, data_checked=True)  # flag > $GROWSEARCH_STORAGE > config > default
    except RunFailed as exc:  # gave up, or a storage fault: rerunning resumes
        raise RunFailed(f"{exc}; resume with: {resume}") from None
    finally:
        console.close()
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
