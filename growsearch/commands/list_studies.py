"""``growsearch list``: the studies in a storage with trial counts, best values, front size."""

from __future__ import annotations

import json
import os

import click
import optuna

from growsearch.errors import ConfigError
from growsearch.report.front import load_study_data
from growsearch.report.study_ref import check_exists, storage_option
from growsearch.search.storage import STORAGE_ENV, open_storage
from growsearch.search.study import STUDY_NAME


def study_summary(data) -> dict:
    """Counts by state (non-zero only), best value per objective, Pareto size."""
    best = {}
    for o in data.objectives:
        b = data.best(o.name)
        if b is not None:
            best[o.name] = {"value": b.values[data.index(o.name)], "trial": b.number}
    return {
        "name": data.name,
        "trials": sum(data.counts.values()),
        "states": {k: v for k, v in data.counts.items() if v},
        "best": best,
        "pareto_size": int(data.on_front.sum()),
        "objectives": [{"name": o.name, "direction": o.direction} for o in data.objectives],
    }


@click.command("list")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def command(storage: str | None, as_json: bool) -> None:
    """List the studies in a storage (--storage or $GROWSEARCH_STORAGE)."""
    url = storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise ConfigError(f"list: no storage given; pass --storage URL or set ${STORAGE_ENV}")
    check_exists(url)
    st = open_storage(url, heartbeat=False)
    rows = []
    for name in optuna.get_all_study_names(st):
        rows.append(study_summary(load_study_data(optuna.load_study(study_name=name, storage=st))))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("(no studies)", err=True)
        return
    click.echo("study\ttrials\tstates\tpareto\tbest")
    for r in rows:
        if not STUDY_NAME.fullmatch(r["name"]):  # a name growsearch would refuse (made by another tool): shown quoted
            r["name"] = repr(r["name"])
        states = " ".join(f"{k}={v}" for k, v in r["states"].items())
        best = " ".join(f"{n}={b['value']:.4g}(#{b['trial']})" for n, b in r["best"].items())
        click.echo(f"{r['name']}\t{r['trials']}\t{states}\t{r['pareto_size']}\t{best}")
