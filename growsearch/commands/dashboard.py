"""``growsearch dashboard STUDY``: optuna-dashboard on the study's storage."""

from __future__ import annotations

import click

from growsearch.report.dashboard import make_dashboard_server, prepare_study, serve
from growsearch.report.front import load_study_data
from growsearch.report.study_ref import resolve_study, storage_option


@click.command("dashboard")
@click.argument("study")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep 127.0.0.1 unless you mean to expose it).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = any free port).")
@click.option("--no-figure", "no_figure", is_flag=True, help="Write nothing to the study (no names, no Pareto figure).")
def command(study: str, storage: str | None, host: str, port: int, no_figure: bool) -> None:
    """Serve optuna-dashboard for STUDY until Ctrl-C; prints the URL on stdout.

    Only study system attributes are written (objective names if missing, the Pareto
    figure); trials are never touched, so this is safe while the study is running.
    """
    ref = resolve_study(study, storage)
    st = ref.storage()
    s = ref.load()
    server = make_dashboard_server(st, host, port)  # bind first: a busy port fails fast
    if not no_figure:
        done = prepare_study(s, load_study_data(s))
        if done:
            click.echo(f"set on study {s.study_name}: {', '.join(done)}", err=True)

    def ready(url: str) -> None:
        click.echo(url)
        click.echo(f"serving optuna-dashboard for {ref.redacted_url}; Ctrl-C stops", err=True)

    serve(server, on_ready=ready)
