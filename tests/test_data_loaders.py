"""Loaders on miniature ASVspoof 2019 LA/PA and FakeOrReal trees written by the tests."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from growsearch.data import DataConfig, build_splits
from growsearch.data.audio import fix_length, read_audio
from growsearch.data.config import ROOT_ENV
from growsearch.errors import ConfigError, DataError
from growsearch.yamlio import parse_model

L = 1600  # clip length used in these tests (0.1 s)

LA_PROTOCOLS = {
    "train": [
        "LA_0079 LA_T_0000001 - - bonafide",
        "LA_0079 LA_T_0000002 - A01 spoof",
        "LA_0080 LA_T_0000003 - A02 spoof",
        "LA_0080 LA_T_0000004 - - bonafide",
        "LA_0081 LA_T_0000005 - A01 spoof",
    ],
    "dev": [
        "LA_0090 LA_D_0000001 - - bonafide",
        "LA_0090 LA_D_0000002 - A03 spoof",
        "LA_0091 LA_D_0000003 - A04 spoof",
    ],
    "eval": [
        "LA_0100 LA_E_0000001 - A07 spoof",
        "LA_0100 LA_E_0000002 - - bonafide",
        "LA_0101 LA_E_0000003 - A19 spoof",
        "LA_0102 LA_E_0000004 - - bonafide",
    ],
}
PROTO_NAME = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


def write_wave(path: Path, n: int, *, rate: int = 16_000, channels: int = 1, seed: int = 0,
               fmt: str | None = None) -> np.ndarray:
    """Write ``n`` frames of random audio; return the float data written (frames[, ch])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = (rng.uniform(-0.5, 0.5, (n, channels)) if channels > 1 else rng.uniform(-0.5, 0.5, n)).astype(np.float64)
    sf.write(str(path), data, rate, subtype="PCM_16", format=fmt)
    return data


def make_asvspoof(root: Path, scenario: str = "LA", protocols: dict[str, list[str]] | None = None,
                  lengths: dict[str, int] | None = None, *, extra_audio: bool = True) -> Path:
    """Write ``root/<scenario>`` in the ASVspoof 2019 layout; return ``root/<scenario>``."""
    protocols = protocols or LA_PROTOCOLS
    if scenario == "PA":
        protocols = {k: [_to_pa(line) for line in v] for k, v in protocols.items()}
    cdir = root / scenario
    pdir = cdir / f"ASVspoof2019_{scenario}_cm_protocols"
    pdir.mkdir(parents=True)
    for split, lines in protocols.items():
        (pdir / f"ASVspoof2019.{scenario}.cm.{PROTO_NAME[split]}.txt").write_text("\n".join(lines) + "\n")
        fdir = cdir / f"ASVspoof2019_{scenario}_{split}" / "flac"
        for i, line in enumerate(lines):
            utt = line.split()[1]
            n = (lengths or {}).get(utt, 2400 + 100 * i)
            write_wave(fdir / f"{utt}.flac", n, seed=zlib.crc32(utt.encode()))
        if extra_audio:  # enrolment audio not in the protocol: must not be picked up
            write_wave(fdir / f"{scenario}_X_9999999.flac", 2000)
    return cdir


def _to_pa(line: str) -> str:
    spk, utt, _env, system, key = line.split()
    system = {"-": "-", "A01": "AA", "A02": "AB", "A03": "BA", "A04": "BB", "A07": "CC", "A19": "CA"}[system]
    return f"{spk.replace('LA', 'PA')} {utt.replace('LA', 'PA')} {'abc' if key == 'spoof' else 'aaa'} {system} {key}"


def la_cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(dataset="asvspoof2019_la", root=root, clip_samples=L, **kw)


# --- ASVspoof 2019 LA / PA ----------------------------------------------------------------


@pytest.mark.parametrize("give", ["parent", "corpus"])
def test_la_counts_labels_attacks_speakers(tmp_path: Path, give: str) -> None:
    cdir = make_asvspoof(tmp_path)
    sp = build_splits(la_cfg(tmp_path if give == "parent" else cdir), seed=1)
    assert (len(sp.train), len(sp.dev), len(sp.eval)) == (5, 3, 4)
    assert sp.train.counts() == {"bonafide": 2, "spoof": 3}
    assert sp.eval.attack_counts() == {"A07": 1, "A19": 1, "bonafide": 2}
    assert [it.utt for it in sp.train.items] == [ln.split()[1] for ln in LA_PROTOCOLS["train"]]
    assert [it.speaker for it in sp.dev.items] == ["LA_0090", "LA_0090", "LA_0091"]
    assert sp.train.labels() == [1, 0, 0, 1, 0]
    wave, label, utt, attack = sp.train[1]
    assert wave.dtype == torch.float32 and wave.shape == (L,)
    assert (label, utt, attack) == (0, "LA_T_0000002", "A01")
    assert sp.train.items[0].key == "bonafide" and sp.train.items[0].attack == "bonafide"
    assert sp.skipped == [] and sp.asv == {}
    # the enrolment file that the protocol does not list is not used
    assert all("X_9999999" not in str(it.path) for _, ds in sp for it in ds.items)


def test_pa_keeps_environment_and_replay_attack(tmp_path: Path) -> None:
    make_asvspoof(tmp_path, "PA")
    sp = build_splits(DataConfig(dataset="asvspoof2019_pa", root=tmp_path, clip_samples=L), seed=0)
    it = sp.train.items[1]
    assert (it.utt, it.speaker, it.env, it.attack, it.key) == ("PA_T_0000002", "PA_0079", "abc", "AA", "spoof")
    assert sp.train.items[0].env == "aaa"
    assert sp.eval.attack_counts() == {"CA": 1, "CC": 1, "bonafide": 2}


def test_asv_files_are_discovered(tmp_path: Path) -> None:
    cdir = make_asvspoof(tmp_path)
    (cdir / "ASVspoof2019_LA_asv_protocols").mkdir()
    (cdir / "ASVspoof2019_LA_asv_scores").mkdir()
    for name in ("ASVspoof2019.LA.asv.dev.female.trl.txt", "ASVspoof2019.LA.asv.dev.gi.trl.txt",
                 "ASVspoof2019.LA.asv.eval.gi.trl.txt"):
        (cdir / "ASVspoof2019_LA_asv_protocols" / name).write_text("x\n")
    (cdir / "ASVspoof2019_LA_asv_scores" / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt").write_text("x\n")
    sp = build_splits(la_cfg(tmp_path), seed=0)
    assert sp.asv["dev"].protocol.name == "ASVspoof2019.LA.asv.dev.gi.trl.txt"
    assert sp.asv["dev"].scores is None
    assert sp.asv["eval"].scores.name == "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"


# --- FakeOrReal --------------------------------------------------------------------------


def make_for(root: Path, variant: str = "for-norm", n: dict[str, tuple[int, int]] | None = None) -> Path:
    n = n or {"training": (2, 3), "validation": (1, 2), "testing": (2, 1)}
    for split, (real, fake) in n.items():
        for folder, count in (("real", real), ("fake", fake)):
            for i in range(count):
                write_wave(root / variant / split / folder / f"file{i}.wav", 2000 + i, seed=i)
    return root / variant


@pytest.mark.parametrize("variant", ["for-norm", "for-2seconds", "for-rerecorded", "for-original"])
def test_fakeorreal_label_from_folder(tmp_path: Path, variant: str) -> None:
    make_for(tmp_path, variant)
    (tmp_path / variant / "training" / "real" / "notes.txt").write_text("not audio")
    cfg = DataConfig(dataset="fakeorreal", root=tmp_path, variant=variant, clip_samples=L)
    sp = build_splits(cfg, seed=0)
    assert sp.train.counts() == {"bonafide": 2, "spoof": 3}
    assert sp.dev.counts() == {"bonafide": 1, "spoof": 2}
    assert sp.eval.counts() == {"bonafide": 2, "spoof": 1}
    utts = {it.utt: it.label for it in sp.train.items}
    assert utts["real/file0"] == 1 and utts["fake/file0"] == 0
    assert sp.train.attack_counts() == {"bonafide": 2, "fake": 3}


def test_fakeorreal_root_may_be_the_variant_folder(tmp_path: Path) -> None:
    vdir = make_for(tmp_path)
    sp = build_splits(DataConfig(dataset="fakeorreal", root=vdir, clip_samples=L), seed=0)
    assert len(sp.train) == 5


def test_fakeorreal_missing_variant_lists_found(tmp_path: Path) -> None:
    make_for(tmp_path, "for-norm")
    with pytest.raises(DataError, match=r"for-2seconds/ not found; variants found: for-norm"):
        build_splits(DataConfig(dataset="fakeorreal", root=tmp_path, variant="for-2seconds"), seed=0)


def test_fakeorreal_missing_label_folder(tmp_path: Path) -> None:
    make_for(tmp_path, n={"training": (1, 1), "validation": (1, 0), "testing": (1, 1)})
    with pytest.raises(DataError, match=r"validation/fake: FakeOrReal label folder not found"):
        build_splits(DataConfig(dataset="fakeorreal", root=tmp_path), seed=0)


# --- audio handling ----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8_000, 44_100, 22_050])
def test_resampled_to_16k(tmp_path: Path, rate: int) -> None:
    p = tmp_path / "a.wav"
    t = np.arange(rate) / rate  # 1 s of a 440 Hz tone
    sf.write(str(p), 0.5 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")
    w = read_audio(p)
    assert w.dtype == np.float32 and abs(w.shape[0] - 16_000) <= 1
    spec = np.abs(np.fft.rfft(w[2000:14000] * np.hanning(12000)))
    peak_hz = np.argmax(spec) * 16_000 / 12000
    assert abs(peak_hz - 440) < 3


def test_stereo_is_downmixed(tmp_path: Path) -> None:
    p = tmp_path / "s.wav"
    data = write_wave(p, 500, channels=2)
    w = read_audio(p)
    ref = np.round(data * 32767) / 32768  # what PCM_16 stores (soundfile scales by 32768)
    np.testing.assert_allclose(w, ref.mean(axis=1), atol=1e-4)


def test_more_than_two_channels_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "c.wav"
    write_wave(p, 300, channels=3)
    with pytest.raises(DataError, match=r"c\.wav: 3 channels; expected mono"):
        read_audio(p)


def test_unusable_sample_rate_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "r.wav"
    write_wave(p, 300, rate=1_000)
    with pytest.raises(DataError, match=r"r\.wav: sample rate 1000 Hz cannot be handled"):
        read_audio(p)


def test_fix_length_crop_and_tile() -> None:
    w = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(w, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(fix_length(w, 10, np.random.default_rng(0)), w)  # exactly L
    np.testing.assert_array_equal(fix_length(w, 10), w)
    np.testing.assert_array_equal(fix_length(w[:3], 7), [0, 1, 2, 0, 1, 2, 0])  # tile, no zeros
    np.testing.assert_array_equal(fix_length(w[:1], 5), [0, 0, 0, 0, 0])
    starts = {int(fix_length(w, 4, np.random.default_rng(s))[0]) for s in range(200)}
    assert starts == set(range(7))  # randint(len - L + 1): every start 0..6 occurs


def test_item_lengths_short_exact_and_long(tmp_path: Path) -> None:
    lengths = {"LA_T_0000001": L, "LA_T_0000002": 37, "LA_T_0000003": 5 * L}
    make_asvspoof(tmp_path, lengths=lengths)
    sp = build_splits(la_cfg(tmp_path), seed=0)
    for i in range(len(sp.train)):
        assert sp.train[i][0].shape == (L,)
    short = sp.train[1][0].numpy()
    full = sp.train.waveform(1)
    assert full.shape == (37,)
    np.testing.assert_array_equal(short[:37], full)
    np.testing.assert_array_equal(short[37:74], full)  # repeated, not zero-padded
    np.testing.assert_array_equal(sp.dev[0][0].numpy(), fix_length(sp.dev.waveform(0), L))  # eval: first L


def test_train_crops_change_with_epoch_and_are_deterministic(tmp_path: Path) -> None:
    make_asvspoof(tmp_path, lengths={"LA_T_0000003": 20 * L, "LA_D_0000001": 20 * L})
    a = build_splits(la_cfg(tmp_path), seed=3)
    b = build_splits(la_cfg(tmp_path), seed=3)
    c = build_splits(la_cfg(tmp_path), seed=4)
    e0 = a.train[2][0]
    torch.testing.assert_close(e0, b.train[2][0])  # same seed, same epoch
    assert not torch.equal(e0, c.train[2][0])  # another seed
    a.train.set_epoch(1)
    e1 = a.train[2][0]
    assert not torch.equal(e0, e1)
    b.train.set_epoch(1)
    torch.testing.assert_close(e1, b.train[2][0])
    a.train.set_epoch(0)
    torch.testing.assert_close(e0, a.train[2][0])
    d0 = a.dev[0][0]
    a.dev.set_epoch(5)
    torch.testing.assert_close(d0, a.dev[0][0])  # dev never crops at random


def test_dataloader_batches(tmp_path: Path) -> None:
    make_asvspoof(tmp_path)
    sp = build_splits(la_cfg(tmp_path), seed=0)
    wave, label, utt, attack = next(iter(torch.utils.data.DataLoader(sp.train, batch_size=4)))
    assert wave.shape == (4, L) and label.tolist() == [1, 0, 0, 1]
    assert list(attack) == ["bonafide", "A01", "A02", "bonafide"] and utt[0] == "LA_T_0000001"


# --- subsampling -------------------------------------------------------------------------


def _big_protocol(n_bona: int, per_attack: int) -> dict[str, list[str]]:
    lines = [f"LA_0001 LA_T_{i:07d} - - bonafide" for i in range(n_bona)]
    k = n_bona
    for a in ("A01", "A02", "A03"):
        for _ in range(per_attack):
            lines.append(f"LA_0002 LA_T_{k:07d} - {a} spoof")
            k += 1
    small = {"dev": LA_PROTOCOLS["dev"], "eval": LA_PROTOCOLS["eval"]}
    return {"train": lines, **small}


def test_max_per_class_is_stratified_and_deterministic(tmp_path: Path) -> None:
    make_asvspoof(tmp_path, protocols=_big_protocol(8, 6), lengths={}, extra_audio=False)
    cfg = la_cfg(tmp_path, max_per_class={"train": 5})
    a = build_splits(cfg, seed=0)
    assert a.train.counts() == {"bonafide": 5, "spoof": 5}
    att = a.train.attack_counts()
    assert sorted([att["A01"], att["A02"], att["A03"]]) == [1, 2, 2]  # round-robin over attacks
    assert len(a.dev) == 3  # no cap for dev
    b = build_splits(cfg, seed=99)  # the training seed does not change the subset
    assert [it.utt for it in a.train.items] == [it.utt for it in b.train.items]
    c = build_splits(la_cfg(tmp_path, max_per_class={"train": 5}, subset_seed=1), seed=0)
    assert [it.utt for it in a.train.items] != [it.utt for it in c.train.items]
    utts = [it.utt for it in a.train.items]
    assert utts == sorted(utts)  # original order kept


def test_max_per_attack(tmp_path: Path) -> None:
    make_asvspoof(tmp_path, protocols=_big_protocol(8, 6), lengths={}, extra_audio=False)
    sp = build_splits(la_cfg(tmp_path, max_per_attack={"train": 2, "eval": 1}), seed=0)
    assert sp.train.attack_counts() == {"A01": 2, "A02": 2, "A03": 2, "bonafide": 2}
    assert sp.eval.attack_counts() == {"A07": 1, "A19": 1, "bonafide": 1}


# --- config ------------------------------------------------------------------------------


def test_config_rejects_unknown_keys_and_names() -> None:
    with pytest.raises(ConfigError, match=r"study\.yaml: dataset: Input should be 'asvspoof2019_la'"):
        parse_model(DataConfig, {"dataset": "asvspoof2021"}, "study.yaml")
    with pytest.raises(ConfigError, match=r"extra_key"):
        parse_model(DataConfig, {"dataset": "synthetic", "extra_key": 1}, "study.yaml")
    with pytest.raises(ConfigError, match=r"variant is only valid for dataset fakeorreal"):
        parse_model(DataConfig, {"dataset": "asvspoof2019_la", "variant": "for-norm"}, "s.yaml")
    with pytest.raises(ConfigError, match=r"max_per_class\.dev: Input should be greater than 0"):
        parse_model(DataConfig, {"dataset": "synthetic", "max_per_class": {"dev": 0}}, "s.yaml")
    cfg = parse_model(DataConfig, {"dataset": "fakeorreal"}, "s.yaml")
    assert cfg.for_variant == "for-norm" and cfg.clip_samples == 64_600 and cfg.num_workers == 0


@pytest.mark.parametrize("dataset", sorted(ROOT_ENV))
def test_missing_root_names_the_env_var(dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_ENV[dataset], raising=False)
    with pytest.raises(DataError, match=rf"export {ROOT_ENV[dataset]}="):
        build_splits(DataConfig(dataset=dataset), seed=0)


def test_root_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_asvspoof(tmp_path)
    monkeypatch.setenv("GROWSEARCH_ASVSPOOF2019_LA", str(tmp_path / "LA"))
    sp = build_splits(DataConfig(dataset="asvspoof2019_la", clip_samples=L), seed=0)
    assert len(sp.train) == 5


def test_env_var_pointing_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWSEARCH_FOR_ROOT", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"\$GROWSEARCH_FOR_ROOT=.*nope: fakeorreal root does not exist"):
        build_splits(DataConfig(dataset="fakeorreal"), seed=0)


# --- bad input ---------------------------------------------------------------------------


def test_missing_protocol(tmp_path: Path) -> None:
    cdir = make_asvspoof(tmp_path)
    p = cdir / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    p.unlink()
    with pytest.raises(DataError, match=rf"^{p}: CM protocol not found$"):
        build_splits(la_cfg(tmp_path), seed=0)


def test_root_without_protocol_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no ASVspoof2019_LA_cm_protocols/ folder"):
        build_splits(la_cfg(tmp_path), seed=0)


def _corrupt_protocol(tmp_path: Path, line: str) -> Path:
    cdir = make_asvspoof(tmp_path)
    p = cdir / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    lines = p.read_text().splitlines()
    lines.insert(2, line)
    p.write_text("\n".join(lines) + "\n")
    return p


def test_protocol_line_with_wrong_column_count(tmp_path: Path) -> None:
    p = _corrupt_protocol(tmp_path, "LA_0079 LA_T_0000009 - bonafide")
    with pytest.raises(DataError, match=rf"^{p}:3: expected 5 columns .* got 4"):
        build_splits(la_cfg(tmp_path), seed=0)


def test_protocol_unknown_key(tmp_path: Path) -> None:
    p = _corrupt_protocol(tmp_path, "LA_0079 LA_T_0000009 - A01 fake")
    with pytest.raises(DataError, match=rf"^{p}:3: unknown key 'fake'; valid: bonafide, spoof$"):
        build_splits(la_cfg(tmp_path), seed=0)


def test_protocol_duplicate_utterance(tmp_path: Path) -> None:
    p = _corrupt_protocol(tmp_path, "LA_0079 LA_T_0000001 - - bonafide")
    with pytest.raises(DataError, match=rf"^{p}:3: utterance LA_T_0000001 listed twice \(first at line 1\)"):
        build_splits(la_cfg(tmp_path), seed=0)


def _break_file(cdir: Path, how: str) -> Path:
    f = cdir / "ASVspoof2019_LA_train" / "flac" / "LA_T_0000003.flac"
    if how == "missing":
        f.unlink()
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "garbage":
        f.write_bytes(b"this is not audio at all" * 10)
    elif how == "zero_frames":
        sf.write(str(f), np.zeros(0), 16_000, format="FLAC", subtype="PCM_16")
    elif how == "three_channels":
        f.unlink()
        write_wave(f, 500, channels=3, fmt="FLAC")
    return f


BAD = ["missing", "empty", "garbage", "zero_frames", "three_channels"]


@pytest.mark.parametrize("how", BAD)
def test_bad_audio_file_fails_up_front_naming_file_and_line(tmp_path: Path, how: str) -> None:
    cdir = make_asvspoof(tmp_path)
    f = _break_file(cdir, how)
    with pytest.raises(DataError) as ei:
        build_splits(la_cfg(tmp_path), seed=0)
    msg = str(ei.value)
    assert msg.startswith(f"{f}: ") and "\n" not in msg
    assert msg.endswith("ASVspoof2019.LA.cm.train.trn.txt:3)")


@pytest.mark.parametrize("how", BAD)
def test_bad_file_skipped_and_reported(tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    cdir = make_asvspoof(tmp_path)
    f = _break_file(cdir, how)
    with caplog.at_level(logging.WARNING):
        sp = build_splits(la_cfg(tmp_path, on_bad_file="skip"), seed=0)
    assert len(sp.train) == 4 and "LA_T_0000003" not in [it.utt for it in sp.train.items]
    assert [p for p, _ in sp.train.skipped] == [str(f)] and sp.skipped == sp.train.skipped
    assert str(f) in sp.train.skipped[0][1]
    assert "skipped 1 bad file" in caplog.text and str(f) in caplog.text
    assert sp.summary()["splits"]["train"]["skipped"] == 1


def test_corrupt_data_with_valid_header_fails_up_front_naming_file(tmp_path: Path) -> None:
    """Every file is decoded before training: corrupt data behind a valid header is found by
    build_splits, not when the file is first read (tests/test_data_faults.py has the rest)."""
    cdir = make_asvspoof(tmp_path, lengths={"LA_T_0000003": 40_000})
    f = cdir / "ASVspoof2019_LA_train" / "flac" / "LA_T_0000003.flac"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)  # zero the second half of the frames
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"^{f}: cannot decode audio: .*lost sync.*train\.trn\.txt:3\)$"):
        build_splits(la_cfg(tmp_path), seed=0)


def test_empty_split_after_skipping_is_an_error(tmp_path: Path) -> None:
    cdir = make_asvspoof(tmp_path)
    for f in (cdir / "ASVspoof2019_LA_dev" / "flac").glob("LA_D_*.flac"):
        f.unlink()
    with pytest.raises(DataError, match=r"the dev split of asvspoof2019_la has no usable utterances"):
        build_splits(la_cfg(tmp_path, on_bad_file="skip"), seed=0)


def test_workers_see_the_epoch(tmp_path: Path) -> None:
    """With DataLoader workers (non-persistent), set_epoch reaches the workers' copies."""
    make_asvspoof(tmp_path, lengths={f"LA_T_000000{i}": 10 * L for i in range(1, 6)})
    sp = build_splits(la_cfg(tmp_path), seed=7)
    sp.train.set_epoch(3)
    loader = torch.utils.data.DataLoader(sp.train, batch_size=5, num_workers=2)
    batch = next(iter(loader))[0]
    expected = torch.stack([sp.train[i][0] for i in range(5)])
    torch.testing.assert_close(batch, expected)
    sp.train.set_epoch(4)
    assert not torch.equal(next(iter(loader))[0], expected)
