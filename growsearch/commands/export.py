"""``growsearch export STUDY -o best.yaml``: Pareto-optimal schedules for replay."""

from __future__ import annotations

import click

from growsearch.errors import ConfigError
from growsearch.report.export import PICKS, export_document, parse_pick, pick_members, write_export
from growsearch.report.front import load_study_data
from growsearch.report.study_ref import resolve_study, storage_option


@click.command("export")
@click.argument("study")
@click.argument("budget", required=False, default=None, metavar="[N]")
@storage_option
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True,
              help="YAML file to write (read by growsearch train --schedule).")
@click.option("--pick", "pick", default="knee", show_default=True, metavar="|".join(PICKS),
              help="knee (closest to utopia after normalising), min-eer, max-params:N (best EER with <= N parameters), all.")
@click.option("--max-params", "max_params", type=float, default=None, metavar="N", help="Parameter budget for --pick max-params.")
def command(study: str, budget: str | None, storage: str | None, output: str, pick: str, max_params: float | None) -> None:
    """Write the chosen Pareto-optimal growth schedules of STUDY with their metrics.

    `--pick max-params N` (N after the pick, as in `--pick max-params 200000`),
    `--pick max-params:N` and `--pick max-params --max-params N` are the same.
    """
    if budget is not None:
        if pick != "max-params" or max_params is not None:
            raise ConfigError(f"unexpected argument {budget!r}: a number after STUDY is only the N of --pick max-params N")
        try:
            max_params = float(budget.replace("_", ""))
        except ValueError:
            raise ConfigError(f"--pick max-params N: N must be a number (got {budget!r})") from None
    ref = resolve_study(study, storage)
    data = load_study_data(ref.load())
    kind, limit = parse_pick(pick, max_params)
    members = pick_members(data, kind, limit)
    label = kind if limit is None else f"{kind}:{limit:g}"
    p = write_export(output, export_document(data, members, pick=label, storage=ref.url))
    click.echo(f"exported {len(members)} schedule(s) (trials {', '.join(str(m.number) for m in members)}) to {p}", err=True)
    click.echo(str(p))
