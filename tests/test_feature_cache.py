"""The shared feature cache: exact batches and training, invalidation, concurrent creation,
corrupt entries rebuilt, the decode check once per corpus state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from growsearch.backbones import create_backbone
from growsearch.data import feature_cache as fc
from growsearch.data.config import DataConfig
from growsearch.data.features import LFCC
from growsearch.data.splits import build_splits
from growsearch.data.synthetic import ensure_corpus
from growsearch.train.evaluate import make_loader

CLIP = 24_000  # 1.5 s: the generated utterances (1-4 s) are both shorter and longer, so both kinds are stored


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fc") / "synth"
    ensure_corpus(root, seed=0, size="tiny")
    return root


@pytest.fixture()
def corpus_copy(corpus: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "synth"
    shutil.copytree(corpus, dst)
    return dst


def _cfg(root: Path, cache: Path, **kw) -> DataConfig:  # type: ignore[no-untyped-def]
    return DataConfig(dataset="synthetic", root=root, synth_size="tiny", clip_samples=CLIP, cache_dir=cache, **kw)


def _batches(ds, seed: int, epoch: int) -> list:  # type: ignore[no-untyped-def]
    ds.set_epoch(epoch)
    return list(make_loader(ds, batch_size=5, shuffle=ds.split == "train", seed=seed, num_workers=0, pin=False))


@pytest.mark.parametrize("backbone", ["lcgrnn", "resnet18"])
def test_cached_batches_equal_uncached(corpus: Path, tmp_path: Path, backbone: str) -> None:
    model = create_backbone(backbone, "tiny")
    plain = build_splits(_cfg(corpus, tmp_path, feature_cache=False), seed=7)
    cached = fc.with_feature_cache(build_splits(_cfg(corpus, tmp_path), seed=7), _cfg(corpus, tmp_path),
                                   model.frontend, torch.device("cpu"))
    kinds = cached.train.entry.kinds
    assert (kinds == fc.FEATURE).any() and (kinds == fc.WAVE16).any()  # fixed clips and random crops both covered
    for (name, p), (_, c) in zip(plain, cached):
        assert isinstance(c, fc.CachedClipDataset)
        for epoch in (0, 1):
            for (wp, lp, up, ap), (wc, lc, uc, ac) in zip(_batches(p, 11, epoch), _batches(c, 11, epoch), strict=True):
                assert isinstance(wc, fc.Features)
                assert torch.equal(model.frontend(wp), wc.as_subclass(torch.Tensor)), (name, epoch)
                assert torch.equal(lp, lc) and up == uc and ap == ac
        with torch.no_grad():  # the backbone skips its front-end for Features
            assert torch.equal(model(wp[:2]), model(wc[:2]))


def test_wave_mode_for_raw_frontends_and_cuda(corpus: Path, tmp_path: Path) -> None:
    assert fc.cache_mode(LFCC(), torch.device("cuda")) == "wave"
    plain = build_splits(_cfg(corpus, tmp_path, feature_cache=False), seed=1)
    cached = fc.cached_splits(build_splits(_cfg(corpus, tmp_path), seed=1), cache_root=tmp_path, frontend=None,
                              device=torch.device("cpu"))
    assert (cached.train.entry.kinds == fc.WAVE16).all()  # 16-bit FLAC at 16 kHz: stored as int16, exactly
    for (_, p), (_, c) in zip(plain, cached):
        for epoch in (0, 3):
            for bp, bc in zip(_batches(p, 2, epoch), _batches(c, 2, epoch), strict=True):
                assert type(bc[0]) is torch.Tensor and torch.equal(bp[0], bc[0])
    assert np.array_equal(cached.train.waveform(3), plain.train.waveform(3))


def test_int16_storage_only_when_exact() -> None:
    k = np.arange(-32768, 32768, 7, dtype=np.float32)
    kind, arr = fc._compact(k / np.float32(32768))
    assert kind == fc.WAVE16 and arr.dtype == np.int16
    assert np.array_equal((arr.astype(np.float32) / np.float32(32768)).view(np.int32), (k / np.float32(32768)).view(np.int32))
    resampled = np.linspace(-0.5, 0.5, 1001, dtype=np.float32)  # not k / 32768
    kind, arr = fc._compact(resampled)
    assert kind == fc.WAVE and arr is resampled


def test_cached_training_is_bit_identical(corpus: Path, tmp_path: Path) -> None:
    from growsearch.train.config import TrainConfig
    from growsearch.train.loop import train

    out = []
    for on in (False, True, True):  # off, cold, warm
        cfg = TrainConfig.model_validate({
            "seed": 5, "data": {"dataset": "synthetic", "root": str(corpus), "synth_size": "tiny", "clip_samples": CLIP,
                                "feature_cache": on, "cache_dir": str(tmp_path / "cache")},
            "model": {"backbone": "lcgrnn", "preset": "tiny", "options": {"hidden": [2, 2, 2, 2]}},
            "training": {"epochs": 2, "batch_size": 6, "max_batches_per_epoch": 2, "max_eval_batches": 1, "device": "cpu"}})
        r = train(cfg, out_dir=tmp_path / f"run{len(out)}", resume=False, log=lambda s: None)
        out.append((r.metrics["dev_eer"], [e["train_loss"] for e in r.metrics["epochs"]], r.model.state_dict()))
    for other in out[1:]:
        assert other[:2] == out[0][:2]
        assert all(torch.equal(out[0][2][k], other[2][k]) for k in out[0][2])
    # the switch changes no hash: run keys and prefix keys stay shareable
    assert "feature_cache" not in cfg.model_dump()["data"] and "cache_dir" not in cfg.model_dump()["data"]


def _key(root: Path, frontend=None, split="train", clip=CLIP) -> str:  # type: ignore[no-untyped-def]
    items = build_splits(_cfg(root, root.parent / "c"), seed=0).train.items if split == "train" else \
        build_splits(_cfg(root, root.parent / "c"), seed=0).dev.items
    return fc.entry_key(items, split=split, clip_samples=clip, mode="features",
                        fingerprint=fc.frontend_fingerprint(frontend or LFCC()))[0]


def test_new_key_on_file_protocol_or_setting_change(corpus_copy: Path) -> None:
    base = _key(corpus_copy)
    assert _key(corpus_copy) == base
    assert _key(corpus_copy, clip=CLIP + 1) != base
    assert _key(corpus_copy, frontend=LFCC(deltas=False)) != base
    assert _key(corpus_copy, frontend=LFCC(n_filter=30)) != base
    assert _key(corpus_copy, split="dev") != base
    # an audio file rewritten (other content, same name)
    flac = sorted((corpus_copy / "ASVspoof2019_LA_train" / "flac").glob("*.flac"))[0]
    wave, sr = sf.read(flac, dtype="float32")
    sf.write(flac, wave * 0.5, sr, subtype="PCM_16")
    k_file = _key(corpus_copy)
    assert k_file != base
    # a protocol line changed (the attack of one utterance)
    proto = corpus_copy / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    lines = proto.read_text().splitlines()
    f = lines[0].split()
    f[3] = "A05" if f[3] != "A05" else "A06"
    if f[4] == "bonafide":
        f[4], f[3] = "spoof", "A05"
    proto.write_text("\n".join([" ".join(f), *lines[1:]]) + "\n")
    assert _key(corpus_copy) not in (base, k_file)


def _items(root: Path, split: str = "train"):  # type: ignore[no-untyped-def]
    return getattr(build_splits(_cfg(root, root.parent / "c"), seed=0), split).items


def test_truncated_or_unmarked_entry_is_rebuilt(corpus: Path, tmp_path: Path) -> None:
    items = _items(corpus)
    built: list[str] = []
    kw = dict(split="train", clip_samples=CLIP, mode="features", frontend=LFCC(), on_build=built.append)
    e = fc.ensure_entry(tmp_path, items, **kw)
    ref = [e.get(i) for i in range(len(e))]
    assert len(built) == 1 and fc.ensure_entry(tmp_path, items, **kw).path == e.path and len(built) == 1
    data = e.path / "data.bin"
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size - 100)
    assert fc.open_entry(e.path, e.path.name) is None
    e2 = fc.ensure_entry(tmp_path, items, **kw)
    assert len(built) == 2 and all(np.array_equal(a, e2.get(i)) for i, a in enumerate(ref))
    (e2.path / fc.COMPLETE).unlink()  # a partial entry: the marker comes last
    e3 = fc.ensure_entry(tmp_path, items, **kw)
    assert len(built) == 3 and all(np.array_equal(a, e3.get(i)) for i, a in enumerate(ref))
    meta = json.loads((e3.path / "meta.json").read_text())
    meta["items"] += 1
    (e3.path / "meta.json").write_text(json.dumps(meta))  # the marker's digest no longer matches
    fc.ensure_entry(tmp_path, items, **kw)
    assert len(built) == 4
    assert [p.name for p in (tmp_path / e.path.parent.name).iterdir() if not p.name.endswith(".lock")] == [e.path.name]


def test_corrupt_bytes_are_detected_when_read(corpus: Path, tmp_path: Path) -> None:
    model = create_backbone("lcgrnn", "tiny")
    cfg = _cfg(corpus, tmp_path)
    plain = build_splits(_cfg(corpus, tmp_path, feature_cache=False), seed=0).dev
    cached = fc.with_feature_cache(build_splits(cfg, seed=0), cfg, model.frontend, torch.device("cpu")).dev
    path = cached.entry.path
    with open(path / "data.bin", "r+b") as fh:  # same size, other bytes
        fh.seek(int(cached.entry.offsets[2]) + 8)
        fh.write(b"\x7f\x7f\x7f\x7f")
    x = cached[2][0]
    assert torch.equal(x, model.frontend(plain[2][0][None])[0])  # recomputed, not trusted
    assert not path.exists()  # moved aside: the next trial rebuilds it
    again = fc.with_feature_cache(build_splits(cfg, seed=0), cfg, model.frontend, torch.device("cpu")).dev
    assert torch.equal(again[2][0], x)


_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from growsearch.data import feature_cache as fc
    from growsearch.data.config import DataConfig
    from growsearch.data.features import LFCC
    from growsearch.data.splits import build_splits
    root, cache, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    CLIP = int(sys.argv[4])
    items = build_splits(DataConfig(dataset="synthetic", root=root, synth_size="tiny", clip_samples=CLIP,
                                    feature_cache=False), seed=0).train.items
    while not go.exists():
        time.sleep(0.01)
    built = []
    e = fc.ensure_entry(cache, items, split="train", clip_samples=CLIP, mode="features", frontend=LFCC(),
                        on_build=built.append)
    print(json.dumps({"built": len(built), "path": str(e.path), "sum": float(sum(e.get(i).sum() for i in range(len(e))))}))
""")


def test_concurrent_creation_by_several_processes(corpus: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(corpus), str(cache), str(go), str(CLIP)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    time.sleep(0.5)
    go.touch()
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sum(o["built"] for o in outs) == 1  # one process built it, the others waited and read it
    assert len({o["path"] for o in outs}) == 1 and len({o["sum"] for o in outs}) == 1
    entry = Path(outs[0]["path"])
    assert fc.open_entry(entry, entry.name) is not None
    assert [p.name for p in entry.parent.iterdir() if not p.name.endswith(".lock")] == [entry.name]  # no leftovers


def test_decode_check_runs_once_per_corpus_state(corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import growsearch.data.splits as splits_mod

    calls: list[int] = []
    real = splits_mod.decode_verdicts

    def counting(paths, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(paths))
        return real(paths, **kw)

    monkeypatch.setattr(splits_mod, "decode_verdicts", counting)
    cfg = _cfg(corpus_copy, tmp_path)
    build_splits(cfg, seed=0)
    build_splits(cfg, seed=1)
    assert len(calls) == 1
    flac = sorted((corpus_copy / "ASVspoof2019_LA_dev" / "flac").glob("*.flac"))[0]
    os.utime(flac, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed file: checked again
    build_splits(cfg, seed=0)
    assert len(calls) == 2
    build_splits(_cfg(corpus_copy, tmp_path, feature_cache=False), seed=0)
    assert len(calls) == 3  # off: the per-machine verdict cache as before


def test_unwritable_cache_falls_back(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = _cfg(corpus, blocker / "cache")
    msgs: list[str] = []
    splits = fc.with_feature_cache(build_splits(_cfg(corpus, tmp_path), seed=0), cfg, LFCC(), torch.device("cpu"), msgs.append)
    assert not isinstance(splits.train, fc.CachedClipDataset) and "feature cache not used" in msgs[0]


def test_study_trials_share_the_cache_in_shared_dir(tmp_path: Path) -> None:
    import yaml

    from growsearch.search.resources import study_data_config
    from growsearch.search.study import load_study_config

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "studies" / "quickstart.yaml").read_text())
    doc["space"] = str(root / "search_spaces" / "quickstart.yaml")
    if isinstance(doc.get("train"), str):
        doc["train"] = str((root / "studies" / doc["train"]).resolve())
    doc["execution"] = {**(doc.get("execution") or {}), "shared_dir": str(tmp_path / "shared")}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_study_config(tmp_path / "s.yaml")
    assert study_data_config(cfg).cache_dir == (tmp_path / "shared").resolve() / "feature_cache"
    off = cfg.model_copy(update={"execution": cfg.execution.model_copy(update={"shared_dir": str(tmp_path / "other")})})
    assert off.config_hash() == cfg.config_hash()  # where the cache lives is not part of the study's identity
