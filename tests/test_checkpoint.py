"""Model checkpoints: save a grown backbone, rebuild it by replaying its events, same outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from growsearch.backbones import create_backbone, list_backbones
from growsearch.backbones.checkpoint import atomic_torch_save, load_model, read_checkpoint, save_model
from growsearch.errors import ConfigError
from growsearch.growth.freeze import FreezePolicy
from growsearch.schedule import GrowthEvent

TOY_EVENTS = [
    GrowthEvent(point="fc1", epoch=1, neurons=2, form="parallel"),
    GrowthEvent(point="fc1", epoch=1, neurons=3),
    GrowthEvent(point="fc2", epoch=2, neurons=2),
    GrowthEvent(point="fc2", epoch=3, action="shrink", neurons=1),
]


def _train_a_bit(model: torch.nn.Module, samples: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    x = torch.randn(4, samples, generator=torch.Generator().manual_seed(7))
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1]))
    opt.zero_grad()
    loss.backward()
    opt.step()


def _round_trip(model: torch.nn.Module, path: Path, samples: int, extra: dict | None = None) -> dict:
    save_model(path, model, extra=extra)
    loaded, got_extra = load_model(path)
    model.eval()
    loaded.eval()
    x = torch.randn(3, samples, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
    assert loaded.history == model.history
    assert loaded.spec.to_dict() == model.spec.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    return got_extra


def test_toy_round_trip_after_several_events(toy_registered: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = create_backbone(toy_registered, "tiny")
    g = torch.Generator().manual_seed(5)
    results = []
    for ev in TOY_EVENTS:
        results.append(m.apply_event(ev, generator=g))
        _train_a_bit(m, 16)
    assert m.width("fc1") == 9 and m.width("fc2") == 4
    pol = FreezePolicy.build(m, [m.apply_event(GrowthEvent(point="fc2", epoch=4, neurons=1), generator=g)], "new_only")
    extra = {"epoch": 5, "metrics": {"dev_eer": 0.125, "curve": [0.5, 0.25]}, "freeze": pol.state_dict(),
             "note": None, "flags": (True, False)}
    got = _round_trip(m, tmp_path / "sub" / "model.pt", 16, extra)
    assert got["epoch"] == 5 and got["metrics"] == {"dev_eer": 0.125, "curve": [0.5, 0.25]}
    assert torch.equal(got["freeze"]["masks"]["fc2.weight"], pol.masks["fc2.weight"])
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["model.pt"]  # no temp file left


@pytest.mark.parametrize("backbone", list_backbones())
def test_registered_backbone_round_trip(backbone: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = create_backbone(backbone, "tiny")
    g = torch.Generator().manual_seed(5)
    for i, (name, p) in enumerate(sorted(m.growth_points().items())[:2]):
        m.apply_event(GrowthEvent(point=name, epoch=i + 1, neurons=max(1, p.step), form=p.forms[0]), generator=g)
    _train_a_bit(m, 4000)
    _round_trip(m, tmp_path / "m.pt", 4000)


def test_missing_corrupt_and_foreign_files(toy_registered: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.pt: model checkpoint not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(ConfigError, match=r"bad\.pt: not a readable model checkpoint"):
        load_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigError, match=r"foreign\.pt: not a growsearch model checkpoint"):
        load_model(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "growsearch-model/1", "obj": Path("x")}, pickled)  # not weights_only-safe
    with pytest.raises(ConfigError, match=r"pickled\.pt: not a readable model checkpoint"):
        read_checkpoint(pickled)
    m = create_backbone(toy_registered, "tiny")
    m.apply_event(GrowthEvent(point="fc2", epoch=1, neurons=2))
    good = tmp_path / "good.pt"
    save_model(good, m)
    blob = torch.load(good, weights_only=True)
    blob["history"] = []  # weights of a grown model, no events: shapes do not fit
    torch.save(blob, tmp_path / "nohist.pt")
    with pytest.raises(ConfigError, match=r"nohist\.pt: weights do not fit"):
        load_model(tmp_path / "nohist.pt")
    blob["spec"] = {"name": "no_such_net", "preset": "tiny", "overrides": {}}
    torch.save(blob, tmp_path / "nonet.pt")
    with pytest.raises(ConfigError, match=r"nonet\.pt: cannot rebuild the model: unknown backbone 'no_such_net'"):
        load_model(tmp_path / "nonet.pt")


def test_atomic_save_leaves_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"a": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ck.pt"]
