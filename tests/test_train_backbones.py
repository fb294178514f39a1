"""Every registered backbone trains through the loop with a growth event (parametrised over
the registry), and every shipped config under configs/ validates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from growsearch.backbones import create_backbone, list_backbones
from growsearch.schedule import GrowthSchedule, load_schedules
from growsearch.train.config import TrainConfig, load_train_config
from growsearch.train.loop import train

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").glob("*.yaml") if "schedule" not in p.name)


@pytest.mark.parametrize("backbone", list_backbones())
def test_backbone_trains_and_grows(backbone: str, corpus: Path, tmp_path: Path) -> None:
    point = next(iter(create_backbone(backbone, "tiny").growth_points().values()))
    sched = GrowthSchedule.of([{"point": point.name, "epoch": 1, "neurons": point.step}])
    cfg = TrainConfig.model_validate({
        "seed": 3,
        "data": {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny", "clip_samples": 4000},
        "model": {"backbone": backbone, "preset": "tiny"},
        "training": {"epochs": 2, "batch_size": 4, "max_batches_per_epoch": 1, "max_eval_batches": 3, "device": "cpu",
                     "loss": "hinge" if backbone == "lcgrnn" else "ce"},
    })
    r = train(cfg, sched, out_dir=tmp_path, resume=False, log=lambda s: None)
    recs = r.metrics["epochs"]
    assert all(math.isfinite(x["train_loss"]) for x in recs)
    assert recs[1]["params"] > recs[0]["params"]
    assert 0.0 <= r.metrics["eval_eer"] <= 1.0


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_train_config(path)
    assert cfg.training.epochs > 0


def test_smoke_schedule_fits_smoke_config() -> None:
    root = Path(__file__).parent.parent / "configs"
    cfg = load_train_config(root / "smoke.yaml")
    (sched,) = load_schedules(root / "smoke_schedule.yaml")
    model = create_backbone(cfg.model.backbone, cfg.model.preset)
    sched.validate_for(model.growth_points(), cfg.training.epochs)


def test_pretrained_state_dict_is_loaded_strictly(tmp_path: Path, corpus: Path) -> None:
    import torch

    from growsearch.errors import ConfigError
    from growsearch.train.loop import build_model

    src = create_backbone("resnet18", "tiny")
    torch.save(src.state_dict(), tmp_path / "w.pt")
    data = {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny"}

    def cfg(path: Path, preset: str = "tiny") -> TrainConfig:
        return TrainConfig.model_validate({"data": data, "training": {"epochs": 1},
                                           "model": {"backbone": "resnet18", "preset": preset, "pretrained": str(path)}})

    model = build_model(cfg(tmp_path / "w.pt"))
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="does not fit backbone 'resnet18'"):
        build_model(cfg(tmp_path / "w.pt", preset="small"))
    with pytest.raises(ConfigError, match="model.pretrained: file not found"):
        build_model(cfg(tmp_path / "missing.pt"))
