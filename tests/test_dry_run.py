"""``growsearch train --dry-run``: the costs it projects are the costs a real run reports.

A real tiny run on the generated corpus and a dry run of the same config and schedule must
agree, epoch by epoch, on total parameters, trainable entries, FLOPs per second of audio and
training FLOPs; the dry run needs no corpus, weight file or training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from growsearch.cli import main
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig
from growsearch.train.dryrun import dry_run
from growsearch.train.loop import train

KEYS = ("params", "trainable_params", "flops", "train_flops_epoch")
# isolated GRU growth with the new_units freeze, then plasticity (shrink) with a new lr
SCHEDULE = GrowthSchedule.of([
    {"point": "gru2", "epoch": 1, "neurons": 4, "freeze": "new_units"},
    {"point": "gru2", "epoch": 2, "action": "shrink", "freeze": "all", "lr": 5e-4},
], label="tiny-plasticity")


def _config(root: Path, **training: Any) -> dict[str, Any]:
    return {
        "seed": 3,
        "data": {"dataset": "synthetic", "root": str(root), "synth_size": "tiny", "clip_samples": 8000},
        "model": {"backbone": "lcgrnn", "preset": "tiny_authors"},
        "training": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "device": "cpu", "loss": "hinge",
                     "freeze_extra_trainable": ["head"], **training},
    }


def test_dry_run_equals_the_real_runs_metrics(corpus: Path, tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate(_config(corpus))
    real = train(cfg, SCHEDULE, out_dir=tmp_path / "run", resume=False, log=lambda _: None).metrics
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["train_flops"] == real["train_flops"]
    # the dry run reads no corpus: point it at a folder that does not exist (24 = the tiny corpus size)
    dry = dry_run(TrainConfig.model_validate(_config(tmp_path / "absent")), SCHEDULE)
    assert not (tmp_path / "absent").exists()
    assert dry["train_clips"] == 24 == on_disk["epochs"][0]["samples"]
    for r_real, r_dry in zip(on_disk["epochs"], dry["epochs"], strict=True):
        assert {k: r_real[k] for k in KEYS} == {k: r_dry[k] for k in KEYS}, r_real["epoch"]
    assert dry["train_flops"] == on_disk["train_flops"]
    assert dry["train_flops_scratch_final"] == on_disk["train_flops_scratch_final"]
    # the grown phase trains only the new units and the head
    assert [p["trainable_params"] for p in dry["phases"]] == [r["trainable_params"] for r in on_disk["epochs"]]
    assert dry["phases"][1]["trainable_params"] < dry["phases"][1]["params"]


def test_dry_run_cli_text_and_json_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path / "absent", max_batches_per_epoch=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SCHEDULE.to_dict()))
    argv = ["train", str(tmp_path / "c.yaml"), "--schedule", str(tmp_path / "s.yaml"), "--dry-run"]
    assert main(argv + ["--json"]) in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert data["train_clips"] == 16 and len(data["epochs"]) == 3 and len(data["phases"]) == 3
    assert data["train_flops"] == sum(r["train_flops_epoch"] for r in data["epochs"])
    assert main(argv + ["--train-clips", "100"]) in (0, None)
    out = capsys.readouterr().out
    assert "training clips per epoch: 16 (--train-clips)" in out and "new_units" in out and "projected training FLOPs" in out
    assert not (tmp_path / "absent").exists() and not (Path("runs") / "c").exists()


def test_dry_run_unknown_clip_count_and_bad_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = TrainConfig.model_validate({**_config(tmp_path), "data": {"dataset": "fakeorreal", "root": None}})
    rep = dry_run(cfg, SCHEDULE)
    assert rep["train_clips"] is None and rep["train_flops"] is None and "--train-clips" in rep["train_clips_source"]
    bad = GrowthSchedule.of([{"point": "gru9", "epoch": 1, "neurons": 4}])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config(tmp_path)))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(bad.to_dict()))
    try:
        code = main(["train", str(tmp_path / "c.yaml"), "--schedule", str(tmp_path / "s.yaml"), "--dry-run"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and "gru9" in err and err.count("\n") == 1
