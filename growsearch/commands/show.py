"""``growsearch show STUDY``: config summary, trial states, front, hypervolume, failures."""

from __future__ import annotations

import json
from typing import Any

import click

from growsearch.commands.list_studies import study_summary
from growsearch.metrics.flops_definition import LEGACY_FLOPS_DEFINITION
from growsearch.redact import redact_url
from growsearch.report.front import StudyData, load_study_data
from growsearch.report.hypervolume import hv_space, hypervolume
from growsearch.report.reuse import prefix_reuse
from growsearch.report.scheduling import scheduling_summary
from growsearch.report.study_ref import resolve_study, storage_option
from growsearch.search.attrs import STUDY_CONFIG, STUDY_CONFIG_HASH, STUDY_FLOPS_DEFINITION
from growsearch.vocabulary import EER

#: Config keys summarised (when the study's ``config`` user attr has them).
CONFIG_KEYS = ("name", "train", "space", "epochs", "objectives", "constraints", "sampler", "budget", "reference", "execution",
               "backbone", "preset", "dataset", "training")


def _short(v: Any, limit: int = 100) -> str:
    s = json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else str(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def show_data(data: StudyData, reference: str = "nadir", reuse: dict[str, Any] | None = None,
              scheduling: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``show`` prints, as JSON-ready data (``reuse``: :func:`growsearch.report.reuse.prefix_reuse`;
    ``scheduling``: :func:`growsearch.report.scheduling.scheduling_summary`)."""
    out = study_summary(data)
    cfg = STUDY_CONFIG.get(data.user_attrs)
    if isinstance(cfg, dict) and "storage" in cfg:
        cfg = {**cfg, "storage": redact_url(str(cfg["storage"]))}
    out["config"] = {k: cfg[k] for k in CONFIG_KEYS if isinstance(cfg, dict) and k in cfg}
    out["config_hash"] = STUDY_CONFIG_HASH.get(data.user_attrs)
    vals = data.values_array()
    out["hypervolume"] = hypervolume(vals, data.objectives, reference)
    ref_values = (float(x) for x in hv_space(vals, data.objectives, reference).reference)
    out["hv_reference_point"] = {"mode": reference, "values": dict(zip(data.names, ref_values))}
    b = data.best(EER) if EER in data.names else None
    out["best_eer"] = None if b is None else {"value": b.values[data.index(EER)], "trial": b.number}
    out["references"] = [{"trial": p.number, "reference": p.reference} for p in data.references]
    out["failed"] = [{"trial": n, "reason": r} for n, r in data.failed]
    out["duplicates"] = [{"trial": n, "duplicate_of": twin} for n, twin in data.duplicates]
    out["flops_definition"] = STUDY_FLOPS_DEFINITION.get(data.user_attrs) or LEGACY_FLOPS_DEFINITION
    out["flops_warning"] = data.flops_warning()
    out["prefix_cache"] = reuse
    out["stopped_early"] = (scheduling or {}).get("pruned", [])
    out["lineages"] = (scheduling or {}).get("children", [])
    return out


@click.command("show")
@click.argument("study")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@click.option("--reference-point", "reference", type=click.Choice(["nadir", "fixed"]), default="nadir", show_default=True,
              help="Hypervolume reference point.")
def command(study: str, storage: str | None, as_json: bool, reference: str) -> None:
    """Summarise STUDY (a study name with --storage, or a study YAML)."""
    ref = resolve_study(study, storage)
    loaded = ref.load()
    d = show_data(load_study_data(loaded), reference, prefix_reuse(loaded), scheduling_summary(loaded))
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    lines = [f"study: {d['name']}", f"storage: {ref.redacted_url}"]
    for k, v in d["config"].items():
        lines.append(f"config.{k}: {_short(v)}")
    lines.append(f"config hash: {d['config_hash'] or '-'}")
    lines.append("objectives: " + ", ".join(f"{o['name']} ({o['direction']})" for o in d["objectives"]))
    lines.append(f"trials: {d['trials']} (" + ", ".join(f"{k} {v}" for k, v in d["states"].items()) + ")")
    lines.append(f"pareto size: {d['pareto_size']}")
    be = d["best_eer"]
    lines.append(f"best dev_eer: {be['value']:.6g} (trial {be['trial']})" if be else "best dev_eer: -")
    lines.append(f"hypervolume: {d['hypervolume']:.6f} (normalised; reference {reference}: "
                 + ", ".join(f"{k}={v:.4g}" for k, v in d["hv_reference_point"]["values"].items()) + ")")
    if d["references"]:
        lines.append("references: " + ", ".join(f"#{r['trial']} {r['reference']}" for r in d["references"]))
    lines.append(f"flops definition: {d['flops_definition']}")
    if d["flops_warning"]:
        lines.append(f"warning: {d['flops_warning']}")
    pc = d["prefix_cache"]
    if pc is not None and pc["complete"]:
        lines.append(f"prefix cache: {pc['hits']} of {pc['complete']} trials started from a cached prefix, "
                     f"{pc['epochs_reused']} epochs reused, {pc['train_flops_saved']:.4g} of {pc['train_flops']:.4g} "
                     f"training FLOPs saved ({100 * pc['saved_fraction']:.1f}%)"
                     + (f"; trials waited {pc['wait_s']:.0f} s in all for prefixes others were training" if pc.get("wait_s") else ""))
    if d["duplicates"]:  # FAIL in Optuna's states, but proposals that were never trained, not failures
        lines.append(f"duplicate proposals (not trained, resampled): {len(d['duplicates'])}: "
                     + ", ".join(f"#{x['trial']} = #{x['duplicate_of']}" for x in d["duplicates"]))
    if d["stopped_early"]:
        lines.append(f"stopped early (PRUNED, on no front): {len(d['stopped_early'])}")
        for p in d["stopped_early"]:
            lines.append(f"  #{p['trial']} ({p['scheduler'] or '-'}): {p['reason']}")
    if d["lineages"]:
        lines.append(f"population-based growth children: {len(d['lineages'])}")
        for c in d["lineages"]:
            lines.append(f"  #{c['trial']} {c['state']}: continues #{c['parent']} after {c['boundary']} epochs, "
                         f"replaced #{c['replaces']} (generation {c['generation']})")
    lines.append(f"failed trials: {len(d['failed'])}")
    for f in d["failed"]:
        lines.append(f"  #{f['trial']}: {f['reason']}")
    click.echo("\n".join(lines))
