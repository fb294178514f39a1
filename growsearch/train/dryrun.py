"""``growsearch train --dry-run``: what a run will cost, without data, weights or training.

:func:`dry_run` builds the config's model (pretrained weight files are not read: the shapes
do not depend on them), applies the schedule's events epoch by epoch exactly as
:func:`growsearch.train.loop.train` does (same generator seeds, same freeze policy with
``training.freeze_extra_trainable``) and reports, per epoch and per phase (the epochs between
two growth boundaries), the numbers a real run writes to ``metrics.json``'s ``epochs``:
``params`` (total parameters), ``trainable_params`` (entries the freeze policy trains),
``flops`` (inference FLOPs per second of audio) and ``train_flops_epoch`` (training clips x
training FLOPs per clip). Nothing is trained, so the best-checkpoint fields are not known.

Training clips per epoch: ``train_clips`` when given; else counted from the corpus protocol
when the corpus is there (no audio is opened); else the corpus's documented size (ASVspoof
2019 LA train: 25,380; a generated corpus: its size) when no subsampling caps are set;
else unknown (the training FLOPs are then ``None`` and the reason says to pass
``--train-clips``).
"""

from __future__ import annotations

from typing import Any

from growsearch.errors import GrowsearchError
from growsearch.growth.freeze import FreezePolicy
from growsearch.schedule import GrowthSchedule
from growsearch.train.config import TrainConfig
from growsearch.vocabulary import SAMPLE_RATE

__all__ = ["dry_run", "format_dry_run", "train_clips_per_epoch"]

#: documented training-split sizes (bona fide + spoof), used when the corpus is not on this machine
KNOWN_TRAIN_CLIPS: dict[str, int] = {"asvspoof2019_la": 2_580 + 22_800}


def train_clips_per_epoch(config: TrainConfig, train_clips: int | None = None) -> tuple[int | None, str]:
    """Training clips one epoch sees, and where the number comes from.

    Returns:
        ``(clips or None, source)``; ``clips`` is capped by ``max_batches_per_epoch x batch_size``.
    """
    tc, data = config.training, config.data
    n: int | None = None
    if train_clips is not None:
        n, source = int(train_clips), "--train-clips"
    else:
        n, source = _count_from_corpus(config)
    if n is not None and tc.max_batches_per_epoch is not None:
        n = min(n, tc.max_batches_per_epoch * tc.batch_size)
    if n is None and not source:
        source = f"unknown for {data.dataset} without the corpus; pass --train-clips N"
    return n, source


def _count_from_corpus(config: TrainConfig) -> tuple[int | None, str]:
    data = config.data
    caps = data.max_per_class is not None or data.max_per_attack is not None
    try:
        root = data.resolved_root()
        present = root.is_dir() and (data.dataset != "synthetic" or any(root.iterdir()))
    except (GrowsearchError, OSError):
        present = False
    if present:
        from growsearch.data.splits import list_items
        from growsearch.data.subsample import subsample

        try:
            items = list_items(data, root, "train")
            items = subsample(items, split="train", seed=data.subset_seed,
                              max_per_class=data.max_per_class.get("train") if data.max_per_class else None,
                              max_per_attack=data.max_per_attack.get("train") if data.max_per_attack else None)
            return len(items), f"the train protocol under {root} (audio not checked)"
        except GrowsearchError:
            pass
    if caps:
        return None, ""
    if data.dataset == "synthetic":
        from growsearch.data.synthetic import SIZES

        return SIZES[data.synth_size][0], f"the generated corpus size {data.synth_size!r}"
    if data.dataset in KNOWN_TRAIN_CLIPS:
        return KNOWN_TRAIN_CLIPS[data.dataset], f"the documented {data.dataset} train split"
    return None, ""


def dry_run(config: TrainConfig, schedule: GrowthSchedule | None = None, *, train_clips: int | None = None,
            schedule_source: str = "schedule", flops: bool = True, model: Any = None) -> dict[str, Any]:
    """Apply ``schedule`` to ``config``'s model epoch by epoch and report its costs.

    ``flops=False`` counts parameters only (FLOP fields are ``None``): what the parameter
    table of ``docs/PAPER_PRESETS.md`` needs, in a fraction of the time. ``model``: a fresh
    backbone built from ``config.model`` to use (and grow) instead of building one.

    Returns:
        ``{"backbone", "preset", "epochs": [per-epoch records], "phases": [...], "train_clips",
        "train_clips_source", "train_flops", "train_flops_scratch_final", "schedule"}``; the
        per-epoch records carry the keys of ``metrics.json``'s records named in the module docstring.

    Raises:
        ConfigError / ScheduleError: a bad model option or a schedule that does not fit.
    """
    from growsearch.backbones import create_backbone
    from growsearch.metrics.cost import count_params
    from growsearch.train.bookkeeping import costs as costs_now
    from growsearch.train.epoch import apply_events

    def costs_of(model: Any) -> dict[str, Any]:
        if flops:
            return costs_now(model, clip_s)
        return {"params": int(count_params(model)["total"]), "flops": None, "train_flops_per_sample": None}

    tc = config.training
    schedule = schedule if schedule is not None else (config.schedule or GrowthSchedule.empty())
    if model is None:
        options = {k: v for k, v in dict(config.model.options).items() if k != "pretrained"}
        model = create_backbone(config.model.backbone, config.model.preset, **options)
    schedule.validate_for(model.growth_points(), tc.epochs, source=schedule_source)
    model.check_schedule(schedule, source=schedule_source)
    clip_s = config.data.clip_samples / SAMPLE_RATE
    clips, clips_source = train_clips_per_epoch(config, train_clips)
    if not flops:
        clips = None
    policy = FreezePolicy.build(model, [], "all")
    costs = costs_of(model)
    records: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    for epoch in range(tc.epochs):
        events = schedule.due(epoch)
        if events or epoch == 0:
            if events:
                results = apply_events(model, events, config.seed, epoch)
                policy = FreezePolicy.build(model, results, events[0].freeze, extra_trainable=tc.freeze_extra_trainable)
                costs = costs_of(model)
            phases.append({
                "start_epoch": epoch, "end_epoch": epoch, "freeze": events[0].freeze if events else "all",
                "events": [e.describe() for e in events], "params": costs["params"],
                "trainable_params": policy.trainable_entries(), "flops": costs["flops"],
                "train_flops_per_clip": costs["train_flops_per_sample"], "train_flops": 0.0 if clips is not None else None,
            })
        epoch_flops = clips * costs["train_flops_per_sample"] if clips is not None else None
        phases[-1]["end_epoch"] = epoch
        if epoch_flops is not None:
            phases[-1]["train_flops"] += epoch_flops
        records.append({"epoch": epoch, "params": costs["params"], "trainable_params": policy.trainable_entries(),
                        "flops": costs["flops"], "samples": clips, "train_flops_epoch": epoch_flops})
    total = sum(r["train_flops_epoch"] for r in records) if clips is not None else None
    final = costs_of(model)["train_flops_per_sample"]
    return {
        "backbone": config.model.backbone,
        "preset": config.model.preset,
        "schedule": schedule.to_dict(),
        "clip_seconds": clip_s,
        "train_clips": clips,
        "train_clips_source": clips_source,
        "epochs": records,
        "phases": phases,
        "train_flops": total,
        "train_flops_scratch_final": (clips * tc.epochs * final) if clips is not None else None,
    }


def _si(x: float | None) -> str:
    if x is None:
        return "-"
    for div, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f} {unit}"
    return f"{x:.0f}"


def format_dry_run(report: dict[str, Any]) -> str:
    """The report as text: one line per phase and the run's totals."""
    label = report["schedule"].get("label") or "schedule"
    lines = [f"dry run: {report['backbone']} ({report['preset']}), {label}, {len(report['epochs'])} epochs, "
             f"{report['clip_seconds']:g} s clips; training clips per epoch: "
             f"{report['train_clips'] if report['train_clips'] is not None else 'unknown'} ({report['train_clips_source']})"]
    lines.append(f"{'epochs':<9} {'freeze':<9} {'params':>13} {'trainable':>13} {'FLOPs/s audio':>14} {'train FLOPs':>12}  events")
    for ph in report["phases"]:
        span = f"{ph['start_epoch']}-{ph['end_epoch']}"
        lines.append(f"{span:<9} {ph['freeze']:<9} {ph['params']:>13,} {ph['trainable_params']:>13,} "
                     f"{_si(ph['flops']):>14} {_si(ph['train_flops']):>12}  {', '.join(ph['events']) or '-'}")
    lines.append(f"projected training FLOPs: {_si(report['train_flops'])} "
                 f"(the final model trained from scratch as long: {_si(report['train_flops_scratch_final'])})")
    return "\n".join(lines)
