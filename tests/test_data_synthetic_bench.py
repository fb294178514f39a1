"""The generated corpus's ``bench`` profile: determinism, protocol, split sizes, unseen attacks."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from growsearch.data import DataConfig, build_splits, synthetic
from growsearch.data import synthetic_bench as bench

REDUCED = (16, 12, 12)  # a reduced bench corpus: the same generator path, a few seconds to write


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = synthetic._write(tmp_path / "a", 3, "bench", REDUCED)
    b = synthetic._write(tmp_path / "b", 3, "bench", REDUCED)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and da == db and len(da) == sum(REDUCED) + 4  # audio + 3 protocols + marker
    synthetic._write(tmp_path / "c", 4, "bench", REDUCED)
    dc = _digest(tmp_path / "c")
    assert all(da[k] != dc[k] for k in da if k.endswith(".flac"))
    # the bench utterances are not the small profile's
    spk = synthetic.Speaker(name="LA_0001", f0=120.0, formant_scale=1.0, tilt=1.0, breath=0.05)
    assert not np.array_equal(bench.utterance(3, 0, 0, "A01", spk)[:16000],
                              synthetic.synth_utterance(3, "train", 0, "A01", spk)[:16000])


def test_reduced_corpus_loads_and_has_short_utterances(tmp_path: Path) -> None:
    synthetic._write(tmp_path / "r", 0, "bench", REDUCED)
    sp = build_splits(DataConfig(dataset="asvspoof2019_la", root=tmp_path / "r", clip_samples=16000), seed=0)
    assert (len(sp.train), len(sp.dev), len(sp.eval)) == REDUCED
    for it in sp.dev.items[:4]:
        info = sf.info(str(it.path))
        assert (info.samplerate, info.subtype) == (16_000, "PCM_16") and 1.0 <= info.duration <= 1.5


def test_full_profile_protocol() -> None:
    """The real profile's plan (no audio written): split sizes, classes, seen and unseen attacks."""
    _, n_dev, n_eval = synthetic.SIZES["bench"]
    assert n_dev >= 400 and n_eval >= 400
    plans = {s: synthetic._plan(0, s, n, bench=True) for s, n in zip(("train", "dev", "eval"), synthetic.SIZES["bench"])}
    systems = {s: Counter(sys_ for _, sys_, _ in p) for s, p in plans.items()}
    for s, n in zip(("train", "dev", "eval"), synthetic.SIZES["bench"]):
        assert sum(systems[s].values()) == n and systems[s]["bonafide"] == round(synthetic.BONAFIDE_FRACTION * n)
    assert set(systems["train"]) == set(systems["dev"]) == {"bonafide", *bench.TRAIN_DEV_SYSTEMS}
    eval_attacks = set(systems["eval"]) - {"bonafide"}
    assert eval_attacks == set(bench.EVAL_SYSTEMS)
    assert eval_attacks & set(bench.TRAIN_DEV_SYSTEMS) and eval_attacks - set(bench.TRAIN_DEV_SYSTEMS)
    # every system is two distinct artefact kinds, fixed by the corpus seed
    for s in bench.TRAIN_DEV_SYSTEMS + bench.UNSEEN_SYSTEMS:
        comps = bench.system_components(0, s)
        assert len({c.kind for c in comps}) == 2 and comps == bench.system_components(0, s)


def test_config_accepts_bench() -> None:
    assert DataConfig(dataset="synthetic", synth_size="bench").synth_size == "bench"


def test_channel_cue_is_one_train_system_artefact_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bona fide "channel cue" (CUE_P > 0) is one artefact of a train/dev system, the same for the same seed."""
    spk = synthetic.Speaker(name="LA_0001", f0=120.0, formant_scale=1.0, tilt=1.0, breath=0.05)
    plain = bench.utterance(0, 1, 5, "bonafide", spk)
    monkeypatch.setattr(bench, "CUE_P", 1.0)
    a, b = bench.utterance(0, 1, 5, "bonafide", spk), bench.utterance(0, 1, 5, "bonafide", spk)
    assert np.array_equal(a, b) and not np.array_equal(a, plain)
    pool = {c for s in bench.TRAIN_DEV_SYSTEMS for c in bench.system_components(0, s)}
    cue = bench.channel_cue(0, np.random.default_rng(7))
    assert len(cue) == 1 and cue[0] in pool
