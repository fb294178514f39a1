"""``growsearch backbones``: the registered backbones, their presets and growth points."""

from __future__ import annotations

import json
from typing import Any

import click


@click.command("backbones")
@click.argument("name", required=False)
@click.option("--preset", default=None, help="Preset whose growth points to list (default: the backbone's default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(name: str | None, preset: str | None, as_json: bool) -> None:
    """List backbones, or one backbone's presets and growth points."""
    from growsearch.backbones import backbone_presets, create_backbone, list_backbones
    from growsearch.backbones.registry import get_entry
    from growsearch.metrics.cost import count_params

    names = [name] if name else list_backbones()
    out: list[dict[str, Any]] = []
    for n in names:
        entry = get_entry(n)
        p = preset if (name and preset) else entry.default_preset
        model = create_backbone(n, p)
        points = [
            {"name": gp.name, "base_width": gp.base_width, "unit": gp.unit, "forms": list(gp.forms), "inits": list(gp.inits)}
            for gp in model.growth_points().values()
        ]
        out.append({"backbone": n, "presets": sorted(backbone_presets(n)), "preset": p,
                    "params": count_params(model)["total"], "input": model.input_kind, "growth_points": points})
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for b in out:
        click.echo(f"{b['backbone']}  (presets: {', '.join(b['presets'])}; input: {b['input']}; "
                   f"{b['preset']}: {b['params']:,} parameters)")
        for gp in b["growth_points"]:
            click.echo(f"  {gp['name']:<16} width {gp['base_width']:>5} {gp['unit']}s  "
                       f"forms: {','.join(gp['forms'])}  inits: {','.join(gp['inits'])}")
