"""The training loop on the real generated corpus: growth, determinism, resume, NaN, freeze,
prefix cache, best-checkpoint rule, and ``growsearch train`` exit codes.

Every run is tiny: ResNet-18 ``tiny``, half-second clips, 2 batches of 8 per epoch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from growsearch.backbones import create_backbone
from growsearch.backbones.checkpoint import load_model
from growsearch.errors import ConfigError, RunFailed, ScheduleError
from growsearch.metrics.cost import count_params, train_flops_per_sample
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig, load_train_config
from growsearch.train.evaluate import loss_fn
from growsearch.train.loop import NonFiniteLoss, train
from growsearch.train.resume import prefix_keys
from growsearch.train.state import prefix_key

GROW_AT_1 = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4}])
REQUIRED = ("eval_eer", "dev_eer", "params", "flops", "train_flops", "train_flops_scratch_final", "epochs",
            "status", "best_epoch", "skipped_files", "schedule", "prefix_epochs_reused", "train_flops_saved")


def make_config(corpus: Path, **training: Any) -> TrainConfig:
    t = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "max_batches_per_epoch": 2, "device": "cpu", **training}
    return TrainConfig.model_validate({
        "seed": 7,
        "data": {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny", "clip_samples": 8000},
        "model": {"backbone": "resnet18", "preset": "tiny"},
        "training": t,
    })


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def grown_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """2 epochs with +4 channels at stage2 before epoch 1 (the reference run)."""
    out = tmp_path_factory.mktemp("grown")
    return train(make_config(corpus), GROW_AT_1, out_dir=out, resume=False, log=quiet)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def assert_same(a: Any, b: Any) -> None:
    assert a.metrics["dev_eer"] == b.metrics["dev_eer"]
    assert a.metrics["eval_eer"] == b.metrics["eval_eer"]
    assert [r["train_loss"] for r in a.metrics["epochs"]] == [r["train_loss"] for r in b.metrics["epochs"]]
    wa, wb = weights(a.model), weights(b.model)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_growth_event_between_epochs(grown_run: Any, corpus: Path) -> None:
    m = grown_run.metrics
    recs = m["epochs"]
    assert [r["epoch"] for r in recs] == [0, 1]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in recs)
    # params grow exactly at epoch 1, by what the same surgery adds to a fresh backbone
    base = create_backbone("resnet18", "tiny")
    n0, per0 = count_params(base)["total"], train_flops_per_sample(base, seconds=0.5)
    base.apply_event(GROW_AT_1.events[0])
    n1, per1 = count_params(base)["total"], train_flops_per_sample(base, seconds=0.5)
    assert recs[0]["params"] == n0
    assert recs[1]["params"] == n1 > n0
    assert recs[0]["events"] == [] and recs[1]["events"][0]["point"] == "stage2"
    assert recs[1]["flops"] > recs[0]["flops"]
    for key in REQUIRED:
        assert key in m, key
    on_disk = json.loads((grown_run.out_dir / "metrics.json").read_text())
    assert on_disk["eval_eer"] == m["eval_eer"] and on_disk["status"] == "ok"
    # training FLOPs: sum over epochs of samples x training FLOPs per clip of that epoch's size
    assert [r["samples"] for r in recs] == [16, 16]
    assert m["train_flops"] == 16 * per0 + 16 * per1
    assert m["train_flops_scratch_final"] == 32 * per1 > m["train_flops"]
    # scores.txt: one "utt attack key score" line per eval item, score = logit1 - logit0
    lines = (grown_run.out_dir / "scores.txt").read_text().split("\n")
    lines = [ln for ln in lines if ln.strip()]
    assert len(lines) == 12
    utt, attack, key, score = lines[0].split()
    assert key in ("bonafide", "spoof") and float(score) == float(score)
    # the best checkpoint file reloads into the same model
    best, extra = load_model(grown_run.out_dir / "best_model.pt")
    assert extra["epoch"] == m["best_epoch"]
    for k, v in weights(best).items():
        assert torch.equal(v, weights(grown_run.model)[k])


def test_same_seed_same_result(grown_run: Any, corpus: Path, tmp_path: Path) -> None:
    again = train(make_config(corpus), GROW_AT_1, out_dir=tmp_path, resume=False, log=quiet)
    assert_same(grown_run, again)


def test_interrupted_run_resumes_to_the_same_result(grown_run: Any, corpus: Path, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_after_first(record: dict[str, Any], ckpt: Path) -> None:
        assert (ckpt / "state.pt").is_file()
        if record["epoch"] == 0:
            raise Stop

    with pytest.raises(Stop):
        train(make_config(corpus), GROW_AT_1, out_dir=tmp_path, resume=False, on_epoch=stop_after_first, log=quiet)
    lines: list[str] = []
    seen: list[tuple[int, bool]] = []
    resumed = train(make_config(corpus), GROW_AT_1, out_dir=tmp_path,
                    on_epoch=lambda r, d: seen.append((r["epoch"], r.get("restored", False))), log=lines.append)
    assert any("resuming" in ln and "epoch 1" in ln for ln in lines)
    assert seen == [(0, True), (1, False)]  # the restored epoch's record first, then the trained one
    assert_same(grown_run, resumed)


def test_resume_from_a_copied_checkpoint(grown_run: Any, corpus: Path, tmp_path: Path) -> None:
    """As Ray restores a trial: the checkpoint folder lands elsewhere, the run goes on in a new out_dir."""
    import shutil

    def stop(record: dict[str, Any], ckpt: Path) -> None:
        shutil.copytree(ckpt, tmp_path / "restored")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make_config(corpus), GROW_AT_1, out_dir=tmp_path / "first", resume=False, on_epoch=stop, log=quiet)
    seen: list[int] = []
    resumed = train(make_config(corpus), GROW_AT_1, out_dir=tmp_path / "second", resume_from=tmp_path / "restored",
                    on_epoch=lambda r, d: seen.append(r["epoch"]) if not r.get("restored") else None, log=quiet)
    assert seen == [1]
    assert_same(grown_run, resumed)
    other = GrowthSchedule.of([{"point": "head", "epoch": 1, "neurons": 2}])
    with pytest.raises(ConfigError, match="--no-resume"):
        train(make_config(corpus), other, out_dir=tmp_path / "third", resume_from=tmp_path / "restored", log=quiet)


def test_nan_loss_fails_the_run(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLoss) as info:
        train(make_config(corpus, lr=1e30), out_dir=tmp_path, resume=False, log=quiet)
    assert isinstance(info.value, RunFailed)
    assert "epoch 0" in str(info.value) and "batch" in str(info.value)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "nan"


def test_new_only_keeps_old_entries_bit_identical(corpus: Path, tmp_path: Path) -> None:
    sched = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4, "freeze": "new_only"}])
    snaps: dict[int, dict[str, torch.Tensor]] = {}

    def grab(record: dict[str, Any], ckpt: Path) -> None:
        model, _ = load_model(ckpt / "state.pt")
        snaps[record["epoch"]] = {n: p.detach().clone() for n, p in model.named_parameters()}

    train(make_config(corpus), sched, out_dir=tmp_path, resume=False, on_epoch=grab, log=quiet)
    before, after = snaps[0], snaps[1]
    assert before.keys() == after.keys()
    changed_new = False
    for name, old in before.items():
        new = after[name]
        block = new[tuple(slice(0, s) for s in old.shape)]
        assert torch.equal(block, old), f"old entries of {name} moved"
        if new.shape != old.shape:
            mask = torch.ones_like(new, dtype=torch.bool)
            mask[tuple(slice(0, s) for s in old.shape)] = False
            changed_new = True
    assert changed_new


def test_prefix_cache_gives_identical_results(grown_run: Any, corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = train(make_config(corpus), GROW_AT_1, out_dir=tmp_path / "a", resume=False, prefix_cache=cache, log=quiet)
    assert first.metrics["prefix_epochs_reused"] == 0
    assert len(list(cache.glob("*.pt"))) == 1
    assert_same(grown_run, first)
    second = train(make_config(corpus), GROW_AT_1, out_dir=tmp_path / "b", resume=False, prefix_cache=cache, log=quiet)
    assert second.metrics["prefix_epochs_reused"] == 1
    assert second.metrics["train_flops_saved"] == pytest.approx(grown_run.metrics["epochs"][0]["train_flops_epoch"])
    assert_same(grown_run, second)


PLASTICITY = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4},
                                 {"point": "stage2", "epoch": 2, "action": "shrink"}])
DROPIN_AT_1 = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4}])
TIMING = ("wall_s", "samples_per_s", "peak_mem_mb")


def comparable(out_dir: Path) -> dict[str, Any]:
    """metrics.json without wall-time fields and the cache bookkeeping, plus the eval scores."""
    m = json.loads((out_dir / "metrics.json").read_text())
    keys = ("status", "dev_eer", "eval_eer", "min_tdcf", "params", "flops", "best_epoch", "train_flops",
            "train_flops_scratch_final", "schedule")
    d = {k: m[k] for k in keys}
    d["epochs"] = [{k: v for k, v in r.items() if k not in TIMING} for r in m["epochs"]]
    d["scores"] = (out_dir / "scores.txt").read_text()
    return d


@pytest.fixture(scope="module")
def uncached(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The plasticity and dropin runs (same first growth epoch) without a prefix cache."""
    base = tmp_path_factory.mktemp("uncached")
    cfg = make_config(corpus, epochs=3, max_batches_per_epoch=1, best_checkpoint="any")
    for name, sched in (("plasticity", PLASTICITY), ("dropin", DROPIN_AT_1)):
        train(cfg, sched, out_dir=base / name, resume=False, log=quiet)
    return {"plasticity": base / "plasticity", "dropin": base / "dropin"}


@pytest.mark.parametrize("writer", ["plasticity", "dropin"])
def test_prefix_cache_reader_uses_its_own_best_rule(writer: str, uncached: dict[str, Path], corpus: Path,
                                                    tmp_path: Path) -> None:
    """Regression: the prefix stored the writer's ``best`` (None after a plasticity writer), so a dropin
    reader lost its epoch-0 best candidate and reported another epoch's EER/params/FLOPs."""
    reader = "dropin" if writer == "plasticity" else "plasticity"
    scheds = {"plasticity": PLASTICITY, "dropin": DROPIN_AT_1}
    # the scenario bites: the dropin run's best is the prefix epoch, the plasticity run's is in its last phase
    assert json.loads((uncached["dropin"] / "metrics.json").read_text())["best_epoch"] == 0
    assert json.loads((uncached["plasticity"] / "metrics.json").read_text())["best_epoch"] == 2
    cfg = make_config(corpus, epochs=3, max_batches_per_epoch=1, best_checkpoint="any")
    cache = tmp_path / "cache"
    train(cfg, scheds[writer], out_dir=tmp_path / writer, resume=False, prefix_cache=cache, log=quiet)
    files = {load_model(f)[1]["epoch"]: f for f in cache.glob("*.pt")}
    assert sorted(files) == [1, 2]  # the states before epochs 1 and 2: both schedules grow the same at epoch 1
    _, extra = load_model(files[1])
    assert extra["best"] is None and extra["run_key"].startswith("prefix:")  # nothing of the writer's schedule
    assert extra["window_best"][0]["epoch"] == 0 and extra["records"][0]["dev_eer"] == extra["window_best"][0]["dev_eer"]
    r = train(cfg, scheds[reader], out_dir=tmp_path / reader, resume=False, prefix_cache=cache, log=quiet)
    assert r.metrics["prefix_epochs_reused"] == 2  # the baseline epoch and the grown one
    assert comparable(tmp_path / reader) == comparable(uncached[reader])
    assert comparable(tmp_path / writer) == comparable(uncached[writer])


def test_prefix_key_ignores_epochs_and_later_events_not_seed(corpus: Path) -> None:
    a, b = make_config(corpus, epochs=4), make_config(corpus, epochs=9)
    grow = {"point": "stage2", "epoch": 1, "neurons": 4}
    dropin, plasticity = GrowthSchedule.of([grow]), GrowthSchedule.of([grow, {"point": "stage2", "epoch": 3, "action": "shrink"}])
    ka, kb = prefix_keys(a, dropin), prefix_keys(b, plasticity)
    assert sorted(ka) == [1, 2, 3] and sorted(kb) == list(range(1, 9))
    assert ka[1] == kb[1] == prefix_keys(a, GrowthSchedule.empty())[1]  # before any event: the baseline's
    assert ka[2] == kb[2] and ka[3] == kb[3]  # the grown phase both schedules share
    assert ka[2] != prefix_keys(a, GrowthSchedule.of([dict(grow, neurons=8)]))[2]
    assert ka[2] != prefix_keys(a, GrowthSchedule.of([dict(grow, freeze="new_only")]))[2]
    assert ka[2] != prefix_keys(a, GrowthSchedule.of([dict(grow, optimizer_state="carry")]))[2]
    assert len(set(ka.values())) == 3
    ident = a.model_dump(mode="json")
    assert prefix_key(ident, 1, []) != prefix_key(dict(ident, seed=8), 1, [])
    assert prefix_key(ident, 1, []) != prefix_key(make_config(corpus, lr=2e-3).model_dump(mode="json"), 1, [])


def test_removed_training_num_workers_still_loads_and_keeps_the_hashes(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``training.num_workers`` was never read: an old config that sets it loads with one warning,
    and every hash (config, run key, prefix key) is what it was before the key was removed."""
    import growsearch.train.config as config_module
    from growsearch.train.resume import run_key

    monkeypatch.setattr(config_module, "_warned_num_workers", False)
    base = {"seed": 3, "data": {"dataset": "synthetic", "root": "/tmp", "synth_size": "tiny"},
            "model": {"backbone": "resnet18", "preset": "tiny"}}
    unset = TrainConfig.model_validate({**base, "training": {"epochs": 2}})
    assert capsys.readouterr().err == ""
    zero, three, three_again = (TrainConfig.model_validate({**base, "training": {"epochs": 2, "num_workers": n}}) for n in (0, 3, 3))
    err = capsys.readouterr().err
    assert err.count("training.num_workers is ignored") == 1 and "data.num_workers" in err
    assert "num_workers" not in unset.model_dump()["training"] and "num_workers" not in three.model_dump()["training"]
    # the values main computed while the key existed (so existing studies and caches still match)
    assert unset.config_hash() == zero.config_hash() == "84d73b92ce480665"
    assert three.config_hash() == three_again.config_hash() == "fd74751b739a5e87"
    assert prefix_key(unset.identity(), 1, []) == prefix_key(zero.identity(), 1, []) != prefix_key(three.identity(), 1, [])
    assert run_key(unset, GROW_AT_1) == run_key(zero, GROW_AT_1)
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig.model_validate({**base, "training": {"epochs": 2, "num_workers": -1}})


@pytest.mark.parametrize("rule", ["last_phase", "any"])
def test_dropin_best_checkpoint_rule(rule: str, corpus: Path, tmp_path: Path) -> None:
    """last_phase: the evaluated checkpoint is the grown model (never a pre-growth epoch)."""
    cfg = make_config(corpus, epochs=3, max_batches_per_epoch=1, best_checkpoint=rule)
    r = train(cfg, DROPIN_AT_1, out_dir=tmp_path, resume=False, log=quiet)
    recs = r.metrics["epochs"]
    eligible = [x for x in recs if rule == "any" or x["epoch"] >= 1]
    best = min(eligible, key=lambda x: (x["dev_eer"], x["epoch"]))
    assert r.metrics["best_epoch"] == best["epoch"]
    assert r.metrics["params"] == best["params"]
    if rule == "last_phase":
        assert r.metrics["best_epoch"] >= 1 and r.metrics["params"] > recs[0]["params"]


def test_plasticity_keeps_best_of_last_phase(corpus: Path, tmp_path: Path) -> None:
    sched = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4},
                               {"point": "stage2", "epoch": 2, "action": "shrink"}])
    r = train(make_config(corpus, epochs=3, max_batches_per_epoch=1), sched, out_dir=tmp_path, resume=False, log=quiet)
    assert r.metrics["best_epoch"] == 2
    recs = r.metrics["epochs"]
    assert recs[2]["params"] == recs[0]["params"] < recs[1]["params"]
    assert r.metrics["params"] == recs[0]["params"]


def test_bad_schedule_fails_before_training(corpus: Path, tmp_path: Path) -> None:
    bad = GrowthSchedule.of([{"point": "nowhere", "epoch": 1, "neurons": 4}])
    with pytest.raises(ScheduleError, match="valid points"):
        train(make_config(corpus), bad, out_dir=tmp_path, resume=False, log=quiet)
    late = GrowthSchedule.of([{"point": "stage2", "epoch": 5, "neurons": 4}])
    with pytest.raises(ScheduleError, match="outside the training run"):
        train(make_config(corpus), late, out_dir=tmp_path, resume=False, log=quiet)
    assert not (tmp_path / "metrics.json").exists()


def test_hinge_loss_matches_the_formula() -> None:
    logits = torch.tensor([[0.0, 2.0], [0.5, 0.0], [1.0, 1.2]])
    y = torch.tensor([1, 1, 0])
    # max(0, 1 - (s_y - s_other)) / 2
    expected = torch.tensor([max(0.0, 1 - 2.0) / 2, max(0.0, 1 - (0.0 - 0.5)) / 2, max(0.0, 1 - (1.0 - 1.2)) / 2]).mean()
    torch.testing.assert_close(loss_fn("hinge")(logits, y), expected)
    torch.testing.assert_close(loss_fn("ce")(logits, y), torch.nn.functional.cross_entropy(logits, y))


# ---- config and CLI ---------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def cli(argv: list[str]) -> int:
    from growsearch.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


GOOD = """seed: 1
data: {{dataset: synthetic, root: {root}, synth_size: tiny, clip_samples: 8000}}
model: {{backbone: {backbone}, preset: tiny}}
training: {{epochs: 1, batch_size: 8, lr: {lr}, max_batches_per_epoch: 2, device: cpu}}
"""


def test_cli_bad_yaml_exits_2_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "bad.yaml", "seed: 1\ndata: [unclosed\nmodel: {}\n")
    assert cli(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{cfg}:" in err[0] and "malformed YAML" in err[0]


def test_cli_unknown_backbone_exits_2_listing_valid(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "c.yaml", GOOD.format(root=corpus, backbone="resnet99", lr=1e-3))
    assert cli(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model.backbone" in err and "resnet99" in err and "resnet18" in err and "valid backbones" in err
    with pytest.raises(ConfigError, match="training.epochs"):
        write(tmp_path / "d.yaml", GOOD.format(root=corpus, backbone="resnet18", lr=1e-3).replace("epochs: 1", "epochs: 0"))
        load_train_config(tmp_path / "d.yaml")


def test_cli_runs_and_nan_exits_1(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "ok.yaml", GOOD.format(root=corpus, backbone="resnet18", lr=1e-3))
    sched = write(tmp_path / "s.yaml", "schedules:\n  - {events: []}\n  - {events: [{point: head, epoch: 0, neurons: 2}]}\n")
    assert cli(["train", str(cfg), "--schedule", str(sched), "--out", str(tmp_path / "o")]) == 2
    assert "--pick" in capsys.readouterr().err
    assert cli(["train", str(cfg), "--schedule", str(sched), "--pick", "1", "--out", str(tmp_path / "o"), "--no-resume"]) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert summary["status"] == "ok" and summary["schedule"]["events"][0]["point"] == "head"
    assert "epoch 0 (1/1 epochs) loss" in cap.err  # epochs count from 0, as in metrics.json and schedules
    nan = write(tmp_path / "nan.yaml", GOOD.format(root=corpus, backbone="resnet18", lr=1e30))
    assert cli(["train", str(nan), "--out", str(tmp_path / "n")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("growsearch: error:") and "nan" in err[-1].lower()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [True, False])
def test_cuda_mixed_precision_run(corpus: Path, tmp_path: Path, amp: bool) -> None:
    r = train(make_config(corpus, device="cuda", amp=amp), GROW_AT_1, out_dir=tmp_path, resume=False, log=quiet)
    assert r.metrics["status"] == "ok"
    assert all(math.isfinite(x["train_loss"]) for x in r.metrics["epochs"])
    assert r.metrics["epochs"][0]["peak_mem_mb"] > 0
    assert next(r.model.parameters()).device.type == "cuda"


def test_cli_missing_data_exits_2_naming_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GROWSEARCH_ASVSPOOF2019_LA", raising=False)
    cfg = write(tmp_path / "la.yaml", "data: {dataset: asvspoof2019_la}\nmodel: {backbone: resnet18, preset: tiny}\n"
                                      "training: {epochs: 1, device: cpu}\n")
    assert cli(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GROWSEARCH_ASVSPOOF2019_LA" in err[0]


EXPORTED = """growsearch_export: 1
study: hand-written
objectives: [{{name: dev_eer, direction: minimize}}]
pick: all
schedules:
  - trial: 3
    seed: 5
    reference: null
    values: {{dev_eer: 0.5}}
    metrics: {{}}
    schedule: {{version: 1, events: []}}
  - trial: 8
    seed: {seed}
    reference: paper-dropin
    values: {{dev_eer: 0.4}}
    metrics: {{}}
    schedule: {{version: 1, events: [{{point: head, epoch: 0, neurons: 2}}]}}
"""


def test_load_schedule_items_returns_metadata(tmp_path: Path) -> None:
    from growsearch.schedule import load_schedule_items, load_schedules

    f = write(tmp_path / "best.yaml", EXPORTED.format(seed=11))
    items = load_schedule_items(f)
    assert [m["seed"] for _, m in items] == [5, 11] and items[1][1]["trial"] == 8
    assert items[1][1]["reference"] == "paper-dropin" and "schedule" not in items[1][1]
    assert [s for s, _ in items] == load_schedules(f) and items[1][0].events[0].point == "head"
    plain = write(tmp_path / "plain.yaml", "events: [{point: head, epoch: 0, neurons: 2}]\n")
    assert load_schedule_items(plain) == [(load_schedules(plain)[0], {})]


def test_cli_replays_the_exported_seed(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "ok.yaml", GOOD.format(root=corpus, backbone="resnet18", lr=1e-3))  # seed: 1
    best = write(tmp_path / "best.yaml", EXPORTED.format(seed=11))
    assert cli(["train", str(cfg), "--schedule", str(best), "--pick", "1", "--out", str(tmp_path / "a"), "--no-resume"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["seed"] == 11
    assert f"seed 11 (from {best} [schedule 1, trial 8])" in cap.err
    # the exact trial: same as training the picked schedule with the exported seed directly
    sched = GrowthSchedule.of([{"point": "head", "epoch": 0, "neurons": 2}])
    direct = train(load_train_config(cfg).with_overrides(seed=11), sched, out_dir=tmp_path / "d", resume=False, log=quiet)
    replay = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert replay["dev_eer"] == direct.metrics["dev_eer"] and replay["eval_eer"] == direct.metrics["eval_eer"]
    assert [r["train_loss"] for r in replay["epochs"]] == [r["train_loss"] for r in direct.metrics["epochs"]]
    # --seed wins over the file, and says so
    assert cli(["train", str(cfg), "--schedule", str(best), "--pick", "0", "--seed", "3", "--out", str(tmp_path / "b"),
                "--no-resume"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["seed"] == 3 and "seed 3 (from --seed, not the exported item's seed 5)" in cap.err
    # a plain schedule file has no seed: the config's
    plain = write(tmp_path / "plain.yaml", "events: []\n")
    assert cli(["train", str(cfg), "--schedule", str(plain), "--out", str(tmp_path / "c"), "--no-resume"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["seed"] == 1 and f"seed 1 (from {cfg})" in cap.err


def test_cli_bad_exported_seed_exits_2(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "ok.yaml", GOOD.format(root=corpus, backbone="resnet18", lr=1e-3))
    best = write(tmp_path / "best.yaml", EXPORTED.format(seed="abc"))
    assert cli(["train", str(cfg), "--schedule", str(best), "--pick", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{best}: schedules[1].seed" in err[0] and "'abc'" in err[0]
    assert not (tmp_path / "o" / "metrics.json").exists()
