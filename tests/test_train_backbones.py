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


# the backbones whose factory reads a weights file itself (``pretrained=FILE``): the wav2vec2 family
PRETRAINED_OPTION = [b for b in list_backbones() if type(create_backbone(b, "tiny")).pretrained_option]


def test_the_wav2vec2_family_reads_pretrained_files() -> None:
    assert {b for b in list_backbones() if b.startswith("wav2vec2")} == set(PRETRAINED_OPTION)
    assert {"wav2vec2", "wav2vec2_lora", "wav2vec2_widen"} <= set(PRETRAINED_OPTION)


@pytest.mark.parametrize("backbone", PRETRAINED_OPTION)
def test_pretrained_key_and_option_load_the_same_weights(backbone: str, tmp_path: Path, corpus: Path) -> None:
    """``model.pretrained: FILE`` and ``model.options.pretrained: FILE`` load the file's weights
    into the wav2vec2 part, both of them (a torchaudio state dict with random values)."""
    import torch

    from growsearch.errors import ConfigError
    from growsearch.train.loop import build_model

    g = torch.Generator().manual_seed(11)
    own = create_backbone(backbone, "tiny").wav2vec2.state_dict()
    sd = {k: torch.randn(v.shape, generator=g) for k, v in create_backbone("wav2vec2", "tiny").wav2vec2.state_dict().items()}
    path = tmp_path / "w2v.pt"
    torch.save(sd, path)
    data = {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny"}

    def build(model: dict[str, object]) -> torch.nn.Module:
        return build_model(TrainConfig.model_validate({"data": data, "training": {"epochs": 1},
                                                       "model": {"backbone": backbone, "preset": "tiny", **model}}))

    by_key = build({"pretrained": str(path)}).wav2vec2.state_dict()
    by_option = build({"options": {"pretrained": str(path)}}).wav2vec2.state_dict()
    assert any(not torch.equal(own[k], v) for k, v in sd.items())  # the file is not what a fresh build holds
    for k, v in sd.items():
        assert torch.equal(by_key[k], v), k
        assert torch.equal(by_option[k], v), k
    with pytest.raises(ConfigError, match="model.pretrained and model.options.pretrained are both set"):
        build({"pretrained": str(path), "options": {"pretrained": str(path)}})
    torch.save({k: v[..., :1] for k, v in sd.items()}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="does not fit this wav2vec2 model"):
        build({"pretrained": str(tmp_path / "bad.pt")})
