"""The ``growsearch`` command line.

Data goes to stdout, logs and progress to stderr. Exit codes: 0 ok, 1 the run failed,
2 a usage or input error (one clear line, never a traceback), 130 interrupted.

Commands live in ``growsearch/commands/<name>.py`` as a click command called ``command``
and are imported only when used, so ``growsearch --help`` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import sys

import click

from growsearch import __version__
from growsearch.errors import GrowsearchError

# command name -> (module, one-line help shown before the module is imported)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("growsearch.commands.run", "Run (or resume) a search study on Ray Tune."),
    "train": ("growsearch.commands.train", "Train one backbone while applying a growth schedule."),
    "data": ("growsearch.commands.data", "Datasets: generate the synthetic corpus, check a corpus."),
    "score": ("growsearch.commands.score", "EER (and min t-DCF) of a score file."),
    "pareto": ("growsearch.commands.pareto", "The Pareto front of a study: table, JSON, CSV, HTML report."),
    "export": ("growsearch.commands.export", "Export Pareto-optimal growth schedules to YAML."),
    "list": ("growsearch.commands.list_studies", "List the studies in a storage."),
    "show": ("growsearch.commands.show", "Summarise one study."),
    "dashboard": ("growsearch.commands.dashboard", "Open optuna-dashboard on a study's storage."),
    "backbones": ("growsearch.commands.backbones", "List backbones, presets and growth points."),
}


def _available() -> dict[str, tuple[str, str]]:
    return {n: v for n, v in COMMANDS.items() if importlib.util.find_spec(v[0]) is not None}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_available())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        avail = _available()
        if cmd_name not in avail:
            return None
        mod = importlib.import_module(avail[cmd_name][0])
        return mod.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, h) for n, (_, h) in sorted(_available().items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="growsearch")
def cli() -> None:
    """Search how a neural network should grow while it trains.

    Start with the quickstart study: `growsearch run studies/quickstart.yaml`.
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns user errors into one line and an exit code."""
    from growsearch.redact import install_log_redaction, redact_text

    install_log_redaction()  # every log record of this process: passwords masked
    try:
        rv = cli.main(args=argv, prog_name="growsearch", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Abort:
        click.echo("growsearch: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except GrowsearchError as exc:
        click.echo(f"growsearch: error: {redact_text(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("growsearch: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            click.echo(f"growsearch: error: disk full: {exc.filename or ''} ({exc.strerror}); "
                       "free space and rerun the same command to resume", err=True)
            sys.exit(1)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
