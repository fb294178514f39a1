"""``growsearch score``: EER (and min t-DCF) of a CM score file."""

from __future__ import annotations

import json

import click


@click.command("score")
@click.argument("scorefile", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--asv-scores", "asv_scores", type=click.Path(dir_okay=False), default=None,
              help="ASVspoof 2019 ASV score file ('speaker key score', key target/nontarget/spoof) for min t-DCF.")
@click.option("--tdcf-form", type=click.Choice(["legacy", "revised"]), default="legacy", show_default=True,
              help="t-DCF form used with --asv-scores (legacy: ASVspoof 2019 papers; revised: 2021).")
@click.option("--tdcf-constants", default=None,
              help="Published t-DCF constants instead of ASV scores: legacy-la or revised-la (ASVspoof 2019 LA eval).")
def command(scorefile: str, as_json: bool, asv_scores: str | None, tdcf_form: str, tdcf_constants: str | None) -> None:
    """EER of SCOREFILE ('utt attack key score' per line) and, with ASV scores or
    published constants, the minimum t-DCF. EERs are fractions in JSON, percent in text."""
    from growsearch.errors import ConfigError
    from growsearch.metrics.eer import ScoreError
    from growsearch.metrics.scores import read_asv_scores, read_scores, score_summary, split_scores
    from growsearch.metrics.tdcf import TDCF_CONSTANTS, TDCFUndefined, min_tdcf, min_tdcf_from_constants

    if asv_scores and tdcf_constants:
        raise ConfigError("give either --asv-scores or --tdcf-constants, not both")
    if tdcf_constants and tdcf_constants not in TDCF_CONSTANTS:
        raise ConfigError(f"--tdcf-constants: unknown {tdcf_constants!r}; valid: {', '.join(sorted(TDCF_CONSTANTS))}")
    rows = read_scores(scorefile)
    out = {"file": scorefile, **score_summary(rows, source=scorefile)}
    bona, spoof = split_scores(rows)
    try:
        if asv_scores:
            asv = read_asv_scores(asv_scores)
            out["tdcf"] = {"form": tdcf_form, "asv_scores": asv_scores}
            try:
                out["min_tdcf"] = min_tdcf(bona, spoof, asv_tar=asv.target, asv_non=asv.nontarget,
                                           asv_spoof=asv.spoof, form=tdcf_form)  # type: ignore[arg-type]
            except TDCFUndefined as exc:  # the EER still stands; say why the t-DCF does not
                out["min_tdcf"] = None
                out["tdcf"]["undefined"] = exc.reason
        elif tdcf_constants:
            out["min_tdcf"] = min_tdcf_from_constants(bona, spoof, *TDCF_CONSTANTS[tdcf_constants])
            out["tdcf"] = {"constants": tdcf_constants, "c0_c1_c2": list(TDCF_CONSTANTS[tdcf_constants])}
    except ScoreError as exc:  # name the file the problem is in (CM scores, else the ASV scores)
        where = asv_scores if asv_scores and not str(exc).startswith("CM scores") else scorefile
        raise ScoreError(f"{where}: {exc}") from None
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
        return
    click.echo(f"EER       {100 * out['eer']:.4f} %  (threshold {out['eer_threshold']:.6g}; "
               f"{out['n_bonafide']} bona fide, {out['n_spoof']} spoof)")
    if "note" in out:
        click.echo(f"note      {out['note']}")
    if "min_tdcf" in out:
        how = out["tdcf"].get("constants") or f"{tdcf_form}, ASV {asv_scores}"
        if out["min_tdcf"] is None:
            click.echo(f"min t-DCF undefined  ({how}): {out['tdcf']['undefined']}")
        else:
            click.echo(f"min t-DCF {out['min_tdcf']:.6f}  ({how})")
    if len(out["per_attack_eer"]) > 1:
        for attack, e in out["per_attack_eer"].items():
            click.echo(f"  {attack:<8} EER {100 * e:.4f} %")
