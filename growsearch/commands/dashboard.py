"""``growsearch dashboard STUDY``: optuna-dashboard on the study's storage."""

from __future__ import annotations

import click

from growsearch.report.dashboard import exposure_warning, make_dashboard_server, prepare_study, serve
from growsearch.report.front import load_study_data
from growsearch.report.study_ref import resolve_study, storage_option


@click.command("dashboard")
@click.argument("study")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep 127.0.0.1 unless you mean to expose it).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = any free port).")
@click.option("--no-figure", "no_figure", is_flag=True, help="Write nothing to the study (no names, no Pareto figure).")
@click.option("--read-only", "read_only", is_flag=True,
              help="Refuse every write through the dashboard's (unauthenticated) HTTP API, and write nothing to the study.")
def command(study: str, storage: str | None, host: str, port: int, no_figure: bool, read_only: bool) -> None:
    """Serve optuna-dashboard for STUDY until Ctrl-C; prints the URL on stdout.

    Only study system attributes are written (objective names if missing, the Pareto
    figure); trials are never touched, so this is safe while the study is running.
    optuna-dashboard's HTTP API has no authentication and can delete studies: binding
    anything but loopback prints a warning; --read-only refuses writes.
    """
    ref = resolve_study(study, storage)
    st = ref.storage()
    s = ref.load()
    server = make_dashboard_server(st, host, port, read_only=read_only)  # bind first: a busy port fails fast
    warning = exposure_warning(host, server.server_address[1], read_only)
    if warning:
        click.secho(warning, err=True, fg="red", bold=True)
    if not (no_figure or read_only):
        done = prepare_study(s, load_study_data(s))
        if done:
            click.echo(f"set on study {s.study_name}: {', '.join(done)}", err=True)

    def ready(url: str) -> None:
        click.echo(url)
        click.echo(f"serving optuna-dashboard for {ref.redacted_url}; Ctrl-C stops", err=True)

    serve(server, on_ready=ready)
