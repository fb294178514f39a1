"""Plasticity after net2net: an ``appended`` shrink removes net2net's copies but does not fold
their split fan-out back, so it does not restore the model. Schedules and search spaces refuse
the combination with a clear message (README, growth schedules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from growsearch.backbones import create_backbone, list_backbones
from growsearch.errors import ConfigError, ScheduleError
from growsearch.schedule import GrowthSchedule
from growsearch.search.space import parse_space


def _net2net_points(name: str) -> list[tuple[str, object]]:
    pts = create_backbone(name, "tiny").growth_points()
    return [(n, p) for n, p in sorted(pts.items())
            if "inplace" in p.forms and "net2net" in p.inits_for("inplace") and "appended" in p.shrink_rules]


CASES = [(name, point) for name in list_backbones() for point, _ in _net2net_points(name)[:1]]


def _sched(point: str, init: str, rule: str, *, step: int) -> GrowthSchedule:
    return GrowthSchedule.of([
        {"point": point, "epoch": 1, "neurons": step, "form": "inplace", "init": init},
        {"point": point, "epoch": 2, "action": "shrink", "rule": rule},
    ])


@pytest.mark.parametrize(("name", "point"), CASES)
def test_net2net_then_appended_shrink_is_refused(name: str, point: str) -> None:
    model = create_backbone(name, "tiny")
    p = model.growth_points()[point]
    with pytest.raises(ScheduleError, match=r"events\[1\]\.rule: an appended shrink .* after its net2net growth \(events\[0\]\) is refused"):
        _sched(point, "net2net", "appended", step=p.step).validate_for(model.growth_points(), 4)
    _sched(point, "zero_fanout", "appended", step=p.step).validate_for(model.growth_points(), 4)  # fine
    if "magnitude" in p.shrink_rules:
        _sched(point, "net2net", "magnitude", step=p.step).validate_for(model.growth_points(), 4)  # not claimed to restore


def test_why_net2net_then_appended_shrink_does_not_restore() -> None:
    """The evidence behind the refusal, on the live model with no training in between:
    zero_fanout + appended shrink gives back the original outputs bit for bit, net2net does not."""
    wave = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0)) * 0.1
    for init, restored in (("zero_fanout", True), ("net2net", False)):
        torch.manual_seed(0)
        model = create_backbone("lcgrnn", "tiny").eval()
        with torch.no_grad():
            before = model(wave)
            model.grow("gru2", 4, init=init, generator=torch.Generator().manual_seed(1))
            grown = model(wave)
            model.shrink("gru2", rule="appended")
            after = model(wave)
        torch.testing.assert_close(grown, before, rtol=1e-5, atol=1e-6)  # both function-preserving at growth
        assert torch.equal(after, before) is restored, (init, (after - before).abs().max())


def test_space_with_net2net_and_appended_plasticity_is_refused() -> None:
    space = {"backbone": "lcgrnn", "events": {"min": 0, "max": 1}, "epoch": {"low": 1, "high": 2},
             "points": {"gru2": {"neurons": {"low": 2, "high": 4, "step": 2}}},
             "inits": ["random", "net2net"], "plasticity": {"enabled": [False, True], "after": {"low": 1, "high": 1},
                                                              "rules": ["appended"]}}
    with pytest.raises(ConfigError, match=r"inits: net2net at 'gru2' together with plasticity \(rule appended\) is refused"):
        parse_space(space, "space.yaml", epochs=4, preset="tiny")
    parse_space({**space, "inits": ["random", "zero_fanout"]}, "space.yaml", epochs=4, preset="tiny")
    parse_space({**space, "plasticity": {**space["plasticity"], "rules": ["magnitude"]}}, "space.yaml", epochs=4, preset="tiny")


def test_train_cli_refuses_it_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("seed: 0\ndata: {dataset: synthetic, root: %s, synth_size: tiny, clip_samples: 4000}\n"
                   "model: {backbone: lcgrnn, preset: tiny}\ntraining: {epochs: 4, batch_size: 4, device: cpu}\n"
                   % (tmp_path / "synth"))
    sched = tmp_path / "s.yaml"
    sched.write_text(_sched("gru2", "net2net", "appended", step=1).to_yaml())
    res = subprocess.run([sys.executable, "-m", "growsearch", "train", str(cfg), "--schedule", str(sched),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"growsearch: error: {sched} [schedule 0]: events[1].rule: an appended shrink"), res.stderr
