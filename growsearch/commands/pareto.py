"""``growsearch pareto STUDY``: the Pareto front as a table, JSON or CSV, and an HTML report."""

from __future__ import annotations

import json

import click

from growsearch.report.front import front_csv, front_records, front_table, load_study_data
from growsearch.report.study_ref import resolve_study, storage_option


def reference_option(f):
    return click.option(
        "--reference-point",
        "reference",
        type=click.Choice(["nadir", "fixed"]),
        default="nadir",
        show_default=True,
        help="Hypervolume reference: nadir = worst value of each objective x 1.1; fixed = EER 1.0, others as nadir.",
    )(f)


@click.command("pareto")
@click.argument("study")
@storage_option
@click.option("--json", "fmt", flag_value="json", help="A JSON list: number, values, schedule, reference.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV: number, objectives, reference, schedule (JSON).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Also write a self-contained HTML report here.")
@reference_option
def command(study: str, storage: str | None, fmt: str | None, html_path: str | None, reference: str) -> None:
    """Print the Pareto front of STUDY (a study name with --storage, or a study YAML)."""
    ref = resolve_study(study, storage)
    data = load_study_data(ref.load())
    click.echo(f"study {data.name}: {len(data.points)} complete trials, Pareto front of {int(data.on_front.sum())}", err=True)
    warning = data.flops_warning()
    if warning:
        click.echo(f"growsearch: warning: {warning}", err=True)
    if fmt == "json":
        click.echo(json.dumps(front_records(data), indent=2))
    elif fmt == "csv":
        click.echo(front_csv(data), nl=False)
    else:
        click.echo(front_table(data))
    if html_path:
        from growsearch.report.html import write_report

        p = write_report(html_path, data, reference=reference, storage=ref.redacted_url)
        click.echo(f"wrote {p}", err=True)
