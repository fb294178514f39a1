"""The paper presets (presets/): they build and validate, each tiny variant trains, the
wav2vec2 parallel-layer growth matches the paper's form, the frozen regime trains only what it
names, and a preset schedule enqueued as a reference trial is marked as such in the study.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from growsearch.backbones import create_backbone
from growsearch.backbones.wav2vec2 import ParallelEncoderLayer
from growsearch.growth.freeze import FreezePolicy
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig, load_train_config
from growsearch.train.loop import train
from growsearch.train.phase import start_phase

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "presets"
NOT_SCHEDULES = ("config.yaml", "study.yaml", "space.yaml")
FOLDERS = sorted(p.parent for p in PRESETS.rglob("config.yaml"))
CASES = [(f, s) for f in FOLDERS for s in sorted(f.glob("*.yaml")) if s.name not in NOT_SCHEDULES]
CASE_IDS = [f"{f.relative_to(PRESETS)}/{s.stem}" for f, s in CASES]
TINY = [(f, s) for f, s in CASES if f.name == "tiny"]
TINY_IDS = [f"{f.parent.name}/{s.stem}" for f, s in TINY]
LAYERS = "wav2vec2.encoder.transformer.layers"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _points(cfg: TrainConfig) -> dict[str, Any]:
    """The growth points of the config's backbone (wav2vec2 built on the meta device: no memory)."""
    device = "meta" if cfg.model.backbone.startswith("wav2vec2") else "cpu"
    with torch.device(device):
        model = create_backbone(cfg.model.backbone, cfg.model.preset,
                                **{k: v for k, v in cfg.model.options.items() if k != "pretrained"})
    return model.growth_points()


def _on_corpus(cfg: TrainConfig, corpus: Path, **training: Any) -> TrainConfig:
    """The same config on the tiny generated corpus with half-second clips."""
    data = cfg.data.model_copy(update={"root": corpus, "synth_size": "tiny", "clip_samples": 8000})
    return cfg.model_copy(update={"data": data, "training": cfg.training.model_copy(update=training)})


# ---- every preset builds and validates --------------------------------------------------
def test_every_family_has_the_published_variants() -> None:
    have = {str(f.relative_to(PRESETS)): sorted(s.stem for ff, s in CASES if ff == f) for f in FOLDERS}
    assert have["resnet18"] == have["lcgrnn"] == ["baseline", "dropin_frozen", "dropin_unfrozen", "plasticity"]
    assert have["wav2vec2_base"] == ["baseline", "dropin_frozen", "lora"]
    assert have["wav2vec2_small"] == ["baseline", "dropin", "plasticity"]
    for fam in ("resnet18", "lcgrnn", "wav2vec2_base", "wav2vec2_small"):
        assert have[f"{fam}/tiny"] == have[fam], f"{fam}: the tiny variant needs the same schedules"


@pytest.mark.parametrize(("folder", "sched_file"), CASES, ids=CASE_IDS)
def test_preset_config_and_schedule_validate(folder: Path, sched_file: Path) -> None:
    cfg = load_train_config(folder / "config.yaml")
    sched = GrowthSchedule.load(sched_file)
    assert sched.label, f"{sched_file}: a preset schedule needs a label (shown in reports and studies)"
    sched.validate_for(_points(cfg), cfg.training.epochs, source=str(sched_file))
    if any(e.freeze == "new_only" for e in sched.events):
        assert cfg.training.freeze_extra_trainable, "the paper's frozen regime also trains the head"
    if any(e.freeze == "new_units" for e in sched.events):  # the authors' ResNet freezes its head
        assert (cfg.model.backbone == "resnet18") == (not cfg.training.freeze_extra_trainable)


def test_full_presets_carry_the_papers_settings() -> None:
    rn = load_train_config(PRESETS / "resnet18" / "config.yaml")
    assert (rn.model.preset, rn.training.loss, rn.training.optimizer, rn.training.lr, rn.training.batch_size) == (
        "authors", "ce", "adam", 1e-3, 32)
    gr = load_train_config(PRESETS / "lcgrnn" / "config.yaml")
    assert (gr.model.preset, gr.training.loss, gr.training.optimizer, gr.training.lr) == ("authors", "hinge", "adam", 1e-4)
    wb = load_train_config(PRESETS / "wav2vec2_base" / "config.yaml")
    t = wb.training
    assert (t.optimizer, t.lr, t.weight_decay, t.scheduler, t.grad_clip, t.batch_size, t.epochs) == (
        "adamw", 1e-4, 0.01, "plateau", 1.0, 16, 30)
    for cfg in (rn, gr, wb):
        assert cfg.seed == 42 and cfg.data.clip_samples == 64600
    ev = GrowthSchedule.load(PRESETS / "resnet18" / "dropin_frozen.yaml").events
    assert {(e.point, e.neurons, e.form, e.freeze) for e in ev} == {
        ("stage2", 128, "parallel", "new_units"), ("stage3", 256, "parallel", "new_units")}
    (g,) = GrowthSchedule.load(PRESETS / "lcgrnn" / "dropin_unfrozen.yaml").events
    assert (g.point, g.neurons, g.freeze) == ("gru2", 64, "all")
    (p,) = GrowthSchedule.load(PRESETS / "wav2vec2_base" / "dropin_frozen.yaml").events
    assert (p.point, p.neurons, p.form, p.freeze) == ("layer5", 768, "parallel", "new_only")
    (lo,) = GrowthSchedule.load(PRESETS / "wav2vec2_base" / "lora.yaml").events
    assert (lo.point, lo.neurons, lo.init, lo.freeze) == ("lora", 8, "zero_fanout", "new_only")
    plast = GrowthSchedule.load(PRESETS / "wav2vec2_small" / "plasticity.yaml")
    lrs = sorted({(e.epoch, e.lr) for e in plast.events})
    assert lrs == [(15, 5e-5), (30, 1e-5)] and load_train_config(PRESETS / "wav2vec2_small" / "config.yaml").training.lr == 1e-4
    assert all(e.optimizer_state == "fresh" for e in plast.events)
    for fam in ("resnet18", "lcgrnn"):
        s = GrowthSchedule.load(PRESETS / fam / "plasticity.yaml")
        assert s.epochs_with_events == (5, 10) and s.total_grown() == dict.fromkeys(s.total_grown(), 0)


def test_corpus_difficulty_widths_are_the_tiny_presets_and_their_dropin_growth() -> None:
    """bench/corpus_difficulty.py's ``baseline`` width is the tiny preset's and its ``wide`` width
    what the preset's dropin schedules (frozen and unfrozen grow alike) reach, point by point."""
    spec = importlib.util.spec_from_file_location("corpus_difficulty", ROOT / "bench" / "corpus_difficulty.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.WIDTHS == {
        "lcgrnn": {"baseline": {"hidden": [8, 8, 4, 4]}, "wide": {"hidden": [8, 16, 4, 4]}},
        "resnet18": {"baseline": {"widths": [4, 4, 4, 16]}, "wide": {"widths": [4, 12, 12, 16]}},
    }
    for fam, widths in mod.WIDTHS.items():
        folder = PRESETS / fam / "tiny"
        grown = [GrowthSchedule.load(folder / f"{v}.yaml").total_grown() for v in ("dropin_frozen", "dropin_unfrozen")]
        assert grown[0] == grown[1]
        points = _points(load_train_config(folder / "config.yaml"))
        (base,), (wide,) = widths["baseline"].values(), widths["wide"].values()
        for name, units in grown[0].items():
            i = int(name[-1]) - 1
            assert points[name].base_width == base[i] and wide[i] == base[i] + units


# ---- every tiny variant trains ----------------------------------------------------------
@pytest.mark.parametrize(("folder", "sched_file"), TINY, ids=TINY_IDS)
def test_tiny_variant_one_step_per_phase(folder: Path, sched_file: Path) -> None:
    """Build the tiny model, apply the schedule phase by phase as the loop does (surgery,
    freeze policy, fresh optimizer) and take one real training step in every phase."""
    cfg = load_train_config(folder / "config.yaml")
    sched = GrowthSchedule.load(sched_file)
    torch.manual_seed(0)
    model = create_backbone(cfg.model.backbone, cfg.model.preset, **dict(cfg.model.options))
    t = cfg.training
    wave = torch.randn(4, 4000, generator=torch.Generator().manual_seed(1)) * 0.1
    label = torch.tensor([0, 1, 0, 1])
    phase = start_phase(model, results=[], policy="all", optimizer_name=t.optimizer, lr=t.lr, weight_decay=t.weight_decay)
    g = torch.Generator().manual_seed(0)
    for epoch in [0, *sched.epochs_with_events]:
        events = sched.due(epoch)
        if events:
            results = [model.apply_event(e, generator=g) for e in events]
            phase = start_phase(model, results=results, policy=events[0].freeze, optimizer_name=t.optimizer,
                                lr=events[0].lr or t.lr, weight_decay=t.weight_decay,
                                extra_trainable=t.freeze_extra_trainable)
        before = {n: p.detach().clone() for n, p in phase.freeze.trainable_named_parameters()}
        loss = nn.functional.cross_entropy(model(wave), label)
        phase.optimizer.zero_grad()
        loss.backward()
        phase.freeze.before_step()
        phase.optimizer.step()
        phase.freeze.after_step()
        assert torch.isfinite(loss)
        moved = [n for n, p in phase.freeze.trainable_named_parameters() if not torch.equal(p.detach(), before[n])]
        assert moved, f"epoch {epoch}: nothing trained"
    assert model.width  # the grown model still answers its points
    if sched.events and sched.events[-1].action == "shrink":
        assert all(model.grown(p) == 0 for p in sched.total_grown())


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "sched_file"), TINY, ids=TINY_IDS)
def test_tiny_variant_trains_through_the_loop(folder: Path, sched_file: Path, corpus: Path, tmp_path: Path) -> None:
    cfg = _on_corpus(load_train_config(folder / "config.yaml"), corpus, max_batches_per_epoch=1, max_eval_batches=1,
                     batch_size=4)
    res = train(cfg, GrowthSchedule.load(sched_file), out_dir=tmp_path, resume=False, log=lambda _m: None)
    assert res.status == "ok" and 0.0 <= res.metrics["eval_eer"] <= 1.0
    assert len(res.metrics["epochs"]) == cfg.training.epochs


# ---- wav2vec2: the paper's parallel encoder layer ------------------------------------------
def test_wav2vec2_base_parallel_layer_is_768_plus_768_to_768() -> None:
    with torch.device("meta"):
        model = create_backbone("wav2vec2", "base")
        res = model.grow("layer5", 768, form="parallel", init="random")
    layer = model.wav2vec2.encoder.transformer.layers[5]
    assert isinstance(layer, ParallelEncoderLayer) and len(layer.branches) == 1
    assert tuple(layer.proj.weight.shape) == (768, 1536) and tuple(layer.proj.bias.shape) == (768,)
    assert model.width("layer5") == 1536
    assert {f"{LAYERS}.5.proj.weight", f"{LAYERS}.5.proj.bias"} <= res.added
    branch = dict(layer.branches[0].named_parameters())
    assert branch["attention.q_proj.weight"].shape == (768, 768)
    assert branch["feed_forward.intermediate_dense.weight"].shape == (3072, 768)


def test_wav2vec2_parallel_layer_zero_fanout_preserves_outputs_and_projects_with_identity() -> None:
    torch.manual_seed(0)
    model = create_backbone("wav2vec2", "tiny").eval()
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(2)) * 0.1
    with torch.no_grad():
        before = model(x)
        model.grow("layer1", 32, form="parallel", init="zero_fanout", generator=torch.Generator().manual_seed(3))
        after = model(x)
    proj = model.wav2vec2.encoder.transformer.layers[1].proj
    torch.testing.assert_close(proj.weight, torch.cat([torch.eye(32), torch.zeros(32, 32)], 1), rtol=0, atol=0)
    torch.testing.assert_close(proj.bias, torch.zeros(32), rtol=0, atol=0)
    torch.testing.assert_close(after, before)


def test_wav2vec2_parallel_layer_random_init_changes_outputs() -> None:
    torch.manual_seed(0)
    model = create_backbone("wav2vec2", "tiny").eval()
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(2)) * 0.1
    with torch.no_grad():
        before = model(x)
        model.grow("layer1", 32, form="parallel", init="random", generator=torch.Generator().manual_seed(3))
        assert (model(x) - before).abs().max() > 1e-4


def test_frozen_regime_changes_only_the_new_layer_projection_and_head() -> None:
    """AdamW with weight decay, one step: exactly the branch, the projection and the head move."""
    torch.manual_seed(0)
    model = create_backbone("wav2vec2", "tiny")
    res = model.grow("layer1", 32, form="parallel", init="random", generator=torch.Generator().manual_seed(3))
    policy = FreezePolicy.build(model, [res], "new_only", extra_trainable=("head",))
    opt = torch.optim.AdamW([p for _, p in policy.trainable_named_parameters()], lr=1e-2, weight_decay=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(4, 4000, generator=torch.Generator().manual_seed(4)) * 0.1
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1])).backward()
    policy.before_step()
    opt.step()
    policy.after_step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    expected = {n for n in before if n.startswith((f"{LAYERS}.1.branches.", f"{LAYERS}.1.proj.", "head."))}
    assert changed == expected
    assert all(not p.requires_grad for n, p in model.named_parameters() if n not in expected)


def test_loop_freeze_extra_trainable_trains_the_head_in_a_new_only_phase(corpus: Path, tmp_path: Path) -> None:
    """Through train(): with training.freeze_extra_trainable [fc1, fc2] (the ResNet head), the
    head moves in the frozen phase while every old entry of the convolutional stack stays
    bit-identical (old entries keep their indices: the top-left block)."""
    from growsearch.backbones.checkpoint import load_model

    cfg = _on_corpus(load_train_config(PRESETS / "resnet18" / "tiny" / "config.yaml"), corpus, epochs=2,
                     max_batches_per_epoch=2, max_eval_batches=1, batch_size=8)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"preset": "tiny"}),
                                 "training": cfg.training.model_copy(update={"freeze_extra_trainable": ("fc1", "fc2")})})
    sched = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4, "freeze": "new_only"}])
    snaps: dict[int, dict[str, torch.Tensor]] = {}

    def grab(record: dict[str, Any], ckpt: Path) -> None:
        model, _ = load_model(ckpt / "state.pt")
        snaps[record["epoch"]] = {n: p.detach().clone() for n, p in model.named_parameters()}

    train(cfg, sched, out_dir=tmp_path, resume=False, on_epoch=grab, log=lambda _m: None)
    before, after = snaps[0], snaps[1]
    for name, old in before.items():
        block = after[name][tuple(slice(0, s) for s in old.shape)]
        if name.startswith(("fc1.", "fc2.")):
            assert not torch.equal(block, old), f"{name} should train in the frozen regime"
        else:
            assert torch.equal(block, old), f"old entries of {name} moved"


# ---- references in a study --------------------------------------------------------------
def test_enqueued_preset_schedule_is_a_marked_reference_trial(tmp_path: Path) -> None:
    from growsearch.search.searcher import StudySearcher
    from growsearch.search.storage import open_storage
    from growsearch.search.study import load_study_config

    cfg = load_study_config(PRESETS / "lcgrnn" / "tiny" / "study.yaml")
    labels = [r.label for r in cfg.reference]
    assert labels == ["baseline", "paper-dropin-frozen", "paper-dropin-unfrozen", "paper-plasticity"]
    storage = open_storage(f"sqlite:///{tmp_path}/study.db")
    study = optuna.create_study(study_name=cfg.name, storage=storage, directions=cfg.directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    s = StudySearcher(study, cfg.space, objectives=cfg.objective_names, budget_trials=8,
                      references=[(r.label, r.schedule) for r in cfg.reference], seed=cfg.train.seed)
    assert s.resync()["waiting"] == len(labels)
    suggested = [s.suggest(f"r{i}") for i in range(len(labels) + 1)]
    s.close("test over")
    refs = {c["reference"]: c["schedule"] for c in suggested[:-1]}
    assert set(refs) == set(labels)
    frozen = GrowthSchedule.load(PRESETS / "lcgrnn" / "tiny" / "dropin_frozen.yaml")
    assert GrowthSchedule.from_dict(refs["paper-dropin-frozen"]) == frozen
    assert suggested[-1]["reference"] is None and suggested[-1]["params"]  # a searched trial
    trials = optuna.load_study(study_name=cfg.name, storage=storage).get_trials(deepcopy=False)
    marked = {t.user_attrs.get("reference") for t in trials}
    assert set(labels) <= marked and None in marked  # searched trials carry no marker
    for t in trials:
        if t.user_attrs.get("reference"):
            assert t.params == {} and t.user_attrs["schedule"] == refs[t.user_attrs["reference"]]


@pytest.mark.parametrize("study_file", sorted(PRESETS.rglob("study.yaml")), ids=lambda p: str(p.relative_to(PRESETS)))
def test_preset_studies_load_with_every_schedule_as_reference(study_file: Path) -> None:
    from growsearch.search.study import load_study_config

    cfg = load_study_config(study_file)
    schedules = sorted(s for s in study_file.parent.glob("*.yaml") if s.name not in NOT_SCHEDULES)
    assert sorted(r.label for r in cfg.reference) == sorted(GrowthSchedule.load(s).label for s in schedules)
    assert cfg.train == load_train_config(study_file.parent / "config.yaml").with_overrides(epochs=cfg.epochs)


def test_resnet_new_units_phase_trains_only_the_branches_through_the_loop(corpus: Path, tmp_path: Path) -> None:
    """The ResNet preset's frozen regime (freeze new_units, no extra trainables): in the grown
    phase only the parallel branch moves; the consumers' new input columns keep their init and
    every old entry (the linear head included) stays bit-identical."""
    from growsearch.backbones.checkpoint import load_model

    cfg = _on_corpus(load_train_config(PRESETS / "resnet18" / "tiny" / "config.yaml"), corpus, epochs=2,
                     max_batches_per_epoch=2, max_eval_batches=1, batch_size=8)
    assert cfg.model.preset == "tiny_authors" and cfg.training.freeze_extra_trainable == ()
    sched = GrowthSchedule.of([{"point": "stage2", "epoch": 1, "neurons": 4, "form": "parallel", "freeze": "new_units"}])
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    models: dict[int, Any] = {}

    def grab(record: dict[str, Any], ckpt: Path) -> None:
        model, _ = load_model(ckpt / "state.pt")
        models[record["epoch"]] = model
        snaps[record["epoch"]] = {n: p.detach().clone() for n, p in model.named_parameters()}

    train(cfg, sched, out_dir=tmp_path, resume=False, on_epoch=grab, log=lambda _m: None)
    after = snaps[1]
    new = {n for n in after if n not in snaps[0]}
    assert new and new == {n for n in after if n.startswith("stage2.branches.")}
    same_shape = {n for n in snaps[0] if after[n].shape == snaps[0][n].shape}
    assert all(torch.equal(after[n], snaps[0][n]) for n in same_shape)  # the linear head `fc` included
    assert "fc.weight" in same_shape
    for name, old in snaps[0].items():  # every old entry (the linear head included) is bit-identical
        block = after[name][tuple(slice(0, s) for s in old.shape)]
        assert torch.equal(block, old), f"old entries of {name} moved"
    # the consumers' new input columns are exactly what the surgery drew (the loop's generator)
    from growsearch.train.epoch import apply_events

    apply_events(models[0], sched.due(1), cfg.seed, 1)
    for name in ("stage3.blocks.0.conv1.weight", "stage3.blocks.0.downsample.0.weight"):
        assert after[name].shape != snaps[0][name].shape
        assert torch.equal(after[name], dict(models[0].named_parameters())[name].detach()), name
