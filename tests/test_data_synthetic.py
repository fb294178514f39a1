"""The generated corpus: LA layout, determinism, first-use generation, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from growsearch.data import DataConfig, build_splits, synthetic
from growsearch.errors import DataError


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synthetic.generate(out, seed=5, size="tiny")
    return out


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    synthetic.generate(tmp_path / "again", seed=5, size="tiny")
    a, b = _digest(tiny), _digest(tmp_path / "again")
    assert a == b and len(a) == sum(synthetic.SIZES["tiny"]) + 4  # audio + 3 protocols + marker
    spk = synthetic.Speaker(name="LA_0001", f0=120.0, formant_scale=1.0, tilt=1.0, breath=0.05)
    assert not np.array_equal(synthetic.synth_utterance(5, "train", 0, "A01", spk),
                              synthetic.synth_utterance(6, "train", 0, "A01", spk))
    assert synthetic._plan(5, "train", 24) != synthetic._plan(6, "train", 24)


def test_layout_and_audio_format(tiny: Path) -> None:
    proto = tiny / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    lines = proto.read_text().splitlines()
    assert len(lines) == synthetic.SIZES["tiny"][0]
    spk, utt, env, system, key = lines[0].split()
    assert utt.startswith("LA_T_") and env == "-" and key in ("bonafide", "spoof")
    info = sf.info(str(tiny / "ASVspoof2019_LA_train" / "flac" / f"{utt}.flac"))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (16_000, 1, "FLAC", "PCM_16")
    assert 1.0 <= info.duration <= 4.0


def test_loads_through_the_la_loader(tiny: Path) -> None:
    for dataset in ("asvspoof2019_la", "synthetic"):
        sp = build_splits(DataConfig(dataset=dataset, root=tiny, clip_samples=8000, synth_seed=5,
                                     synth_size="tiny"), seed=0)
        n_train, n_dev, n_eval = synthetic.SIZES["tiny"]
        assert (len(sp.train), len(sp.dev), len(sp.eval)) == (n_train, n_dev, n_eval)
        assert sp.train.counts()["bonafide"] == round(synthetic.BONAFIDE_FRACTION * n_train)
        assert set(sp.train.attack_counts()) == {"bonafide", *synthetic.TRAIN_DEV_SYSTEMS}
        assert set(sp.eval.attack_counts()) == {"bonafide", *synthetic.EVAL_SYSTEMS}
        assert not {it.speaker for it in sp.train.items} & {it.speaker for it in sp.eval.items}
        wave, label, utt, attack = sp.dev[0]
        assert wave.shape == (8000,) and np.isfinite(wave.numpy()).all()


def test_level_is_not_a_shortcut() -> None:
    """Level and duration are drawn the same way for both classes (24 utterances each)."""
    spk = synthetic.Speaker(name="LA_0001", f0=120.0, formant_scale=1.0, tilt=1.0, breath=0.05)
    stats: dict[str, list[tuple[float, float]]] = {"bonafide": [], "spoof": []}
    for i in range(48):
        system = "bonafide" if i % 2 == 0 else synthetic.TRAIN_DEV_SYSTEMS[(i // 2) % 6]
        x = synthetic.synth_utterance(11, "dev", i, system, spk)
        stats["bonafide" if system == "bonafide" else "spoof"].append(
            (20 * np.log10(np.sqrt(np.mean(x**2))), x.shape[0] / synthetic.SR))
    b, s = np.array(stats["bonafide"]), np.array(stats["spoof"])
    assert abs(b[:, 0].mean() - s[:, 0].mean()) < 5.0  # dB; each spans ~20 dB (std of the gap ~1.7 dB)
    assert abs(b[:, 1].mean() - s[:, 1].mean()) < 0.5  # seconds; each spans 1-4 s
    assert 1.0 <= min(b[:, 1].min(), s[:, 1].min()) and max(b[:, 1].max(), s[:, 1].max()) <= 4.0


def test_first_use_generates_into_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(dataset="synthetic", synth_seed=5, synth_size="tiny", clip_samples=4000)
    sp = build_splits(cfg, seed=0)
    assert sp.root == Path("data/synth") and (tmp_path / "data/synth" / synthetic.MARKER).is_file()
    assert len(sp.train) == synthetic.SIZES["tiny"][0]
    assert not list((tmp_path / "data").glob(".synth.tmp-*"))
    assert synthetic.ensure_corpus(tmp_path / "data/synth", seed=5, size="tiny") is False  # reused


def test_older_generator_version_is_reused_with_a_warning(tiny: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny, old)
    marker = json.loads((old / synthetic.MARKER).read_text())
    marker["version"] = 0
    (old / synthetic.MARKER).write_text(json.dumps(marker))
    assert synthetic.ensure_corpus(old, seed=5, size="tiny") is False
    assert "generator version 0" in caplog.text


def test_existing_corpus_of_other_seed_is_an_error(tiny: Path) -> None:
    with pytest.raises(DataError, match=r"holds the synthetic corpus of seed 5, size 'tiny'.*not seed 1"):
        build_splits(DataConfig(dataset="synthetic", root=tiny, synth_seed=1, synth_size="tiny"), seed=0)


def test_root_that_is_something_else(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("hi")
    with pytest.raises(DataError, match=r"exists but is not a generated synthetic corpus"):
        synthetic.ensure_corpus(tmp_path / "x", seed=0, size="tiny")
    with pytest.raises(DataError, match=r"unknown synthetic size 'huge'; valid: tiny, small"):
        synthetic.generate(tmp_path / "y", seed=0, size="huge")


def _ensure(root: str) -> bool:
    return synthetic.ensure_corpus(root, seed=5, size="tiny")


@pytest.mark.slow
def test_two_processes_at_once(tmp_path: Path, tiny: Path) -> None:
    root = tmp_path / "shared"
    with mp.get_context("spawn").Pool(2) as pool:
        made = pool.map(_ensure, [str(root), str(root)])
    assert sorted(made) == [False, True]  # the lock makes the second wait and reuse the first's corpus
    assert _digest(root) == _digest(tiny)
    assert not list(tmp_path.glob(".shared.tmp-*"))
