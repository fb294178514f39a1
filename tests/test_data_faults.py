"""Unreadable audio in any split (truncated FLAC, garbage, empty, missing) is found before
training, handled as ``on_bad_file`` says, and reported as one line naming the file and the
protocol line that lists it -- also through the CLI and with DataLoader worker processes.

The corpus is real FLAC written by the tests; a truncated file is a real FLAC cut short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from growsearch.data import DataConfig, build_splits, decode_check
from growsearch.errors import DataError
from growsearch.metrics.flops_definition import FLOPS_DEFINITION

SPLIT_CODE = {"train": "T", "dev": "D", "eval": "E"}
PROTO = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}
KINDS = ("truncated", "garbage", "empty", "missing")
N_PER_SPLIT = 8  # utterances 1..4 can be broken, 5..8 stay usable (both classes)
CLIP = 4_800


def utt(split: str, i: int) -> str:
    return f"LA_{SPLIT_CODE[split]}_{i:07d}"


def make_corpus(root: Path) -> Path:
    """``root/LA`` in the ASVspoof 2019 LA layout: 8 utterances per split, real FLAC."""
    cdir = root / "LA"
    pdir = cdir / "ASVspoof2019_LA_cm_protocols"
    pdir.mkdir(parents=True)
    for split in PROTO:
        lines = []
        for i in range(1, N_PER_SPLIT + 1):
            u = utt(split, i)
            lines.append(f"LA_0001 {u} - {'-' if i % 2 else 'A01'} {'bonafide' if i % 2 else 'spoof'}")
            f = cdir / f"ASVspoof2019_LA_{split}" / "flac" / f"{u}.flac"
            f.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(zlib.crc32(u.encode()))
            sf.write(str(f), rng.uniform(-0.5, 0.5, 40_000), 16_000, subtype="PCM_16", format="FLAC")
        (pdir / f"ASVspoof2019.LA.cm.{PROTO[split]}.txt").write_text("\n".join(lines) + "\n")
    return cdir


def audio(cdir: Path, split: str, i: int) -> Path:
    return cdir / f"ASVspoof2019_LA_{split}" / "flac" / f"{utt(split, i)}.flac"


def protocol(cdir: Path, split: str) -> Path:
    return cdir / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{PROTO[split]}.txt"


def break_file(f: Path, kind: str) -> None:
    raw = f.read_bytes()
    if kind == "truncated":  # header intact, audio data cut
        f.write_bytes(raw[: int(len(raw) * 0.6)])
    elif kind == "garbage":
        f.write_bytes(np.random.default_rng(0).integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    elif kind == "empty":
        f.write_bytes(b"")
    elif kind == "missing":
        f.unlink()
    else:
        raise AssertionError(kind)


def break_all_kinds(cdir: Path, split: str) -> dict[str, Path]:
    """Utterances 1..4 of ``split`` become truncated, garbage, empty, missing."""
    out = {}
    for i, kind in enumerate(KINDS, start=1):
        break_file(audio(cdir, split, i), kind)
        out[kind] = audio(cdir, split, i)
    return out


def cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(dataset="asvspoof2019_la", root=root, clip_samples=CLIP, **kw)


# ---- in process ------------------------------------------------------------------------------


def test_a_truncated_flac_has_an_intact_header(tmp_path: Path) -> None:
    """The case the header check missed: libsndfile opens it and reports all 40,000 frames."""
    cdir = make_corpus(tmp_path)
    f = audio(cdir, "train", 1)
    break_file(f, "truncated")
    assert sf.info(str(f)).frames == 40_000


@pytest.mark.parametrize("split", list(PROTO))
@pytest.mark.parametrize("kind", KINDS)
def test_error_names_file_and_protocol_line_in_every_split(tmp_path: Path, split: str, kind: str) -> None:
    cdir = make_corpus(tmp_path)
    f = audio(cdir, split, 3)
    break_file(f, kind)
    with pytest.raises(DataError) as ei:
        build_splits(cfg(tmp_path), seed=0)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ")
    assert msg.endswith(f"(listed at {protocol(cdir, split)}:3)")


@pytest.mark.parametrize("split", list(PROTO))
def test_skip_leaves_out_every_kind_and_reports_it(tmp_path: Path, split: str) -> None:
    cdir = make_corpus(tmp_path)
    broken = break_all_kinds(cdir, split)
    sp = build_splits(cfg(tmp_path, on_bad_file="skip"), seed=0)
    ds = getattr(sp, split)
    assert len(ds) == N_PER_SPLIT - 4
    assert [p for p, _ in ds.skipped] == [str(broken[k]) for k in KINDS]
    for (p, reason), line in zip(ds.skipped, range(1, 5)):
        assert reason.startswith(f"{p}: ") and reason.endswith(f"(listed at {protocol(cdir, split)}:{line})")
    assert "truncated" in ds.skipped[0][1] or "lost sync" in ds.skipped[0][1]
    assert sp.skipped == ds.skipped


def test_error_counts_the_other_bad_files(tmp_path: Path) -> None:
    cdir = make_corpus(tmp_path)
    broken = break_all_kinds(cdir, "dev")
    with pytest.raises(DataError, match=r"\(and 3 more bad file\(s\) in this split; `growsearch data check` lists them\)$") as ei:
        build_splits(cfg(tmp_path), seed=0)
    assert str(ei.value).startswith(f"{broken['truncated']}: ")


def test_a_file_cut_at_a_frame_boundary_is_found(tmp_path: Path) -> None:
    """Whole FLAC frames missing at the end (the cut falls on a frame's sync code)."""
    cdir = make_corpus(tmp_path)
    f = audio(cdir, "eval", 2)
    with sf.SoundFile(str(f)) as h:
        assert h.frames == 40_000
    raw = f.read_bytes()
    sync = [i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] in (0xF8, 0xF9)]
    cut = next(i for i in sync if i > len(raw) // 2)
    f.write_bytes(raw[:cut])
    with pytest.raises(DataError, match=r"cannot decode audio: the audio data is truncated or corrupt .*listed at .*eval\.trl\.txt:2\)$"):
        build_splits(cfg(tmp_path), seed=0)


def test_verdicts_are_cached_per_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(decode_check.CACHE_ENV, str(tmp_path / "cache"))
    cdir = make_corpus(tmp_path / "corpus")
    decoded: list[Path] = []
    real = decode_check._verdict
    monkeypatch.setattr(decode_check, "_verdict", lambda p: (decoded.append(p), real(p))[1])
    build_splits(cfg(tmp_path / "corpus"), seed=0)
    assert len(decoded) == 3 * N_PER_SPLIT  # every file of every split, once
    decoded.clear()
    build_splits(cfg(tmp_path / "corpus"), seed=0)
    assert decoded == []  # unchanged files: the cached verdicts
    f = audio(cdir, "dev", 4)
    break_file(f, "truncated")  # size changes: decoded again, and found
    with pytest.raises(DataError, match=r"listed at .*dev\.trl\.txt:4\)$"):
        build_splits(cfg(tmp_path / "corpus"), seed=0)
    assert decoded == [f]
    decoded.clear()
    with pytest.raises(DataError):
        build_splits(cfg(tmp_path / "corpus"), seed=0, use_cache=False)
    assert len(decoded) == 3 * N_PER_SPLIT


# ---- through the CLI -------------------------------------------------------------------------


def gs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "growsearch", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def write_config(tmp_path: Path, *, on_bad_file: str, workers: int, feature_cache: bool = True) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(
        "seed: 0\n"
        f"data: {{dataset: asvspoof2019_la, root: {tmp_path}, clip_samples: {CLIP}, on_bad_file: {on_bad_file}, "
        f"num_workers: {workers}, feature_cache: {str(feature_cache).lower()}}}\n"
        "model: {backbone: lcgrnn, preset: tiny, options: {hidden: [2, 2, 2, 2]}}\n"
        "training: {epochs: 1, batch_size: 4, device: cpu}\n"
    )
    return p


SLOW = pytest.mark.slow


@pytest.mark.parametrize(("split", "workers"), [
    ("eval", 0), pytest.param("eval", 2, marks=SLOW), pytest.param("train", 0, marks=SLOW),
    pytest.param("train", 2, marks=SLOW), pytest.param("dev", 0, marks=SLOW), pytest.param("dev", 2, marks=SLOW),
])
def test_train_cli_skips_every_kind_and_reports_it(tmp_path: Path, split: str, workers: int) -> None:
    _train_skips(tmp_path, split, workers)


def _train_skips(tmp_path: Path, split: str, workers: int) -> None:
    cdir = make_corpus(tmp_path)
    broken = break_all_kinds(cdir, split)
    res = gs("train", str(write_config(tmp_path, on_bad_file="skip", workers=workers)), "--out", str(tmp_path / "out"),
             cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["flops_definition"] == FLOPS_DEFINITION
    skipped = metrics["skipped_files"]
    assert [s["path"] for s in skipped] == [str(broken[k]) for k in KINDS]
    for s, line in zip(skipped, range(1, 5)):
        assert s["reason"].endswith(f"(listed at {protocol(cdir, split)}:{line})")
        assert s["reason"] in res.stderr  # and in the log
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(("split", "kind", "workers"), [
    ("eval", "truncated", 2), pytest.param("eval", "truncated", 0, marks=SLOW),
    pytest.param("train", "missing", 0, marks=SLOW), pytest.param("dev", "garbage", 2, marks=SLOW),
    pytest.param("train", "empty", 2, marks=SLOW), pytest.param("dev", "truncated", 0, marks=SLOW),
])
def test_train_cli_error_is_one_line_before_any_training(tmp_path: Path, split: str, kind: str, workers: int) -> None:
    cdir = make_corpus(tmp_path)
    f = audio(cdir, split, 5)
    break_file(f, kind)
    res = gs("train", str(write_config(tmp_path, on_bad_file="error", workers=workers)), "--out", str(tmp_path / "out"),
             cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"growsearch: error: {f}: ")
    assert lines[0].endswith(f"(listed at {protocol(cdir, split)}:5)")
    assert not (tmp_path / "out" / "checkpoint").exists()  # found before the first epoch, even in eval


@pytest.mark.parametrize(("workers", "feature_cache"), [(2, False), (2, True), pytest.param(0, False, marks=SLOW)])
def test_file_corrupted_after_the_check_is_one_line_with_workers(tmp_path: Path, workers: int, feature_cache: bool) -> None:
    """A file that goes bad after its verdict was cached (same size and mtime) fails when a
    DataLoader worker reads it (feature cache off) or the feature cache is built: still one
    line naming the file and the protocol line."""
    cdir = make_corpus(tmp_path)
    check = gs("data", "check", str(tmp_path), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    f = audio(cdir, "train", 6)
    st = f.stat()
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 3:] = bytes(len(raw) - len(raw) // 3)  # zero the audio frames, same size
    f.write_bytes(bytes(raw))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = gs("train", str(write_config(tmp_path, on_bad_file="error", workers=workers, feature_cache=feature_cache)),
             "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 2
    err = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("seed ")]
    assert len(err) == 1, res.stderr
    assert "Original Traceback" not in res.stderr and "Traceback" not in res.stderr
    assert err[0].startswith(f"growsearch: error: {f}: cannot decode audio")
    assert err[0].endswith(f"(listed at {protocol(cdir, 'train')}:6)")


def test_data_check_finds_a_truncated_flac_by_default(tmp_path: Path) -> None:
    cdir = make_corpus(tmp_path)
    f = audio(cdir, "eval", 7)
    break_file(f, "truncated")
    res = gs("data", "check", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert [(b["split"], b["path"]) for b in doc["unreadable"]] == [("eval", str(f))]
    assert res.stderr.strip().splitlines()[-1].startswith("growsearch: error: 1 file(s) cannot be used")
    assert f"(listed at {protocol(cdir, 'eval')}:7)" in res.stderr


# ---- growsearch run checks the data before it starts Ray ----------------------------------------


def write_study(tmp_path: Path, *, on_bad_file: str = "error") -> Path:
    root = Path(__file__).resolve().parents[1]
    p = tmp_path / "study.yaml"
    p.write_text(
        "name: faults\n"
        "train:\n"
        "  seed: 0\n"
        f"  data: {{dataset: asvspoof2019_la, root: {tmp_path}, clip_samples: {CLIP}, on_bad_file: {on_bad_file}}}\n"
        "  model: {backbone: lcgrnn, preset: tiny}\n"
        "  training: {epochs: 4, batch_size: 4, device: cpu}\n"
        f"space: {root / 'search_spaces' / 'quickstart.yaml'}\n"
        "epochs: 4\n"
        "objectives: [dev_eer, params]\n"
        "budget: {trials: 2}\n"
        f"outputs: {tmp_path / 'out'}\n"
        "execution: {num_cpus: 1, cpus_per_trial: 1}\n"
    )
    return p


@pytest.mark.parametrize(("split", "kind"), [("eval", "truncated"), ("dev", "missing")])
def test_run_exits_2_on_bad_data_without_starting_ray(tmp_path: Path, split: str, kind: str) -> None:
    cdir = make_corpus(tmp_path)
    f = audio(cdir, split, 2)
    break_file(f, kind)
    res = gs("run", str(write_study(tmp_path)), cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"growsearch: error: {f}: ") and lines[0].endswith(f"(listed at {protocol(cdir, split)}:2)")
    assert res.stdout == ""
    # Ray never started: Tune creates <outputs>/ray as its first act, and the study database
    # (opened before Ray) was not created either
    out = tmp_path / "out"
    assert not (out / "ray").exists() and not (out / "study.db").exists()
